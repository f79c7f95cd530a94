// pulumi-resource-libvirt, built here from the Pulumi Terraform bridge and the upstream
// Terraform libvirt provider (github.com/dmacvicar/terraform-provider-libvirt), because the Go
// module proxy refuses github.com/pulumi/pulumi-libvirt/provider. See ../README.md.
//
// The mapping is the bridge's standard one, which the pinned Python SDK (pulumi_libvirt
// 0.5.4) was generated with: every Terraform type `libvirt_<name>` becomes
// `libvirt:index/<camelName>:<PascalName>` (data sources `get<Name>`), fields camelCase with
// lists pluralized; the one exception the SDK shows is CloudInitDisk. tests/engine checks every
// SDK token and resource property against the schema this binary serves.
package main

import (
	"encoding/json"
	"io"

	"github.com/dmacvicar/terraform-provider-libvirt/libvirt"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
)

// version is the plugin version the pinned SDK asks the engine for (its pulumi-plugin.json).
var version = "0.5.4"

func info() tfbridge.ProviderInfo {
	p := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(libvirt.Provider()),
		Name:        "libvirt",
		DisplayName: "libvirt",
		Version:     version,
		GitHubOrg:   "dmacvicar",
		Publisher:   "twinstack",
		Config: map[string]*tfbridge.SchemaInfo{
			"uri": {Default: &tfbridge.DefaultInfo{EnvVars: []string{"LIBVIRT_DEFAULT_URI"}}},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"libvirt_cloudinit_disk": {Tok: "libvirt:index/cloudInitDisk:CloudInitDisk"},
		},
	}
	p.MustComputeTokens(tokens.SingleModule("libvirt_", "index", tokens.MakeStandard("libvirt")))
	return p
}

func main() {
	prov := info()
	// The schema is generated from the same mapping at start-up (about 0.1 s) instead of
	// being kept in a file: the bridge uses it to type-check inputs and serves it on GetSchema.
	sink := diag.DefaultSink(io.Discard, io.Discard, diag.FormatOptions{Color: colors.Never})
	spec, err := tfgen.GenerateSchema(prov, sink)
	if err != nil {
		cmdutil.ExitError("pulumi-resource-libvirt: schema: " + err.Error())
	}
	spec.Version = version
	schema, err := json.Marshal(spec)
	if err != nil {
		cmdutil.ExitError("pulumi-resource-libvirt: schema: " + err.Error())
	}
	tfbridge.Main("libvirt", version, prov, schema)
}
