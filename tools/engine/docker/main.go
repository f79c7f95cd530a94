// pulumi-resource-docker, built here from the Pulumi Terraform bridge and the upstream Terraform
// docker provider (github.com/kreuzwerker/terraform-provider-docker), because the Go module proxy
// refuses github.com/pulumi/pulumi-docker/provider. See ../README.md.
//
// The mapping is the one the pinned Python SDK (pulumi_docker 5.2.0) was generated with: the
// bridge's standard tokens (`docker_<name>` becomes `docker:index/<camelName>:<PascalName>`,
// data sources `get<Name>`, fields camelCase with lists pluralized) and the exceptions the SDK
// shows: docker_image is RemoteImage, docker_config is ServiceConfig, and a container's
// `command` and `networks_advanced` keep their singular names. pulumi-docker's own
// `docker:index/image:Image` is native Go code, not part of the upstream, so it is not served;
// twinstack builds images with RemoteImage's `build`. tests/integration/test_engine.py checks
// every SDK token and property against the schema this binary serves.
package main

import (
	"encoding/json"
	"io"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/terraform-providers/terraform-provider-docker/twinstackshim"
)

// version is the plugin version the pinned SDK asks the engine for (its pulumi-plugin.json).
var version = "5.2.0"

func info() tfbridge.ProviderInfo {
	p := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(twinstackshim.Provider(version)),
		Name:        "docker",
		DisplayName: "Docker",
		Version:     version,
		GitHubOrg:   "kreuzwerker",
		Publisher:   "twinstack",
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_container": {
				Tok: "docker:index/container:Container",
				Fields: map[string]*tfbridge.SchemaInfo{
					"command":           {Name: "command"},
					"networks_advanced": {Name: "networksAdvanced"},
				},
			},
			"docker_image":  {Tok: "docker:index/remoteImage:RemoteImage"},
			"docker_config": {Tok: "docker:index/serviceConfig:ServiceConfig"},
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"docker_image": {Tok: "docker:index/getRemoteImage:getRemoteImage"},
		},
	}
	p.MustComputeTokens(tokens.SingleModule("docker_", "index", tokens.MakeStandard("docker")))
	return p
}

func main() {
	prov := info()
	// The schema is generated from the same mapping at start-up instead of being kept in a
	// file: the bridge uses it to type-check inputs and serves it on GetSchema.
	sink := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	spec, err := tfgen.GenerateSchema(prov, sink)
	if err != nil {
		cmdutil.ExitError("pulumi-resource-docker: schema: " + err.Error())
	}
	spec.Version = version
	schema, err := json.Marshal(spec)
	if err != nil {
		cmdutil.ExitError("pulumi-resource-docker: schema: " + err.Error())
	}
	tfbridge.Main("docker", version, prov, schema)
}
