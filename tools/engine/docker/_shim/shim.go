// Package twinstackshim is added to a copy of the upstream module by ../../build.sh, as
// `upstream/twinstackshim`: the upstream provider lives in an internal package, which only code
// inside that module may import. It adds nothing but this accessor.
package twinstackshim

import (
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// Provider is the upstream's SDKv2 provider (resources docker_container, docker_image, …).
func Provider(version string) *schema.Provider { return provider.New(version)() }
