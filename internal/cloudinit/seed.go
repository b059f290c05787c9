package cloudinit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// MaxDataSize bounds user-data and network-config, each.
const MaxDataSize = 16 << 20

// Seed is what goes on a NoCloud seed disk.
type Seed struct {
	// InstanceID is meta-data's instance-id (the VMI's UID): cloud-init
	// runs its per-instance steps once per instance id.
	InstanceID string
	// Hostname is meta-data's local-hostname; omitted when empty.
	Hostname string
	// UserData is user-data, verbatim (empty: an empty file).
	UserData string
	// NetworkData is network-config, verbatim; omitted when empty.
	NetworkData string
}

// SeedFor makes the seed of a VMI's cloudInitNoCloud volume: the instance
// id is the VMI's UID, the hostname spec.hostname or else the VMI's name,
// and the base64 variants are decoded. An error names the offending field.
func SeedFor(vmi *v1.VirtualMachineInstance, src v1.CloudInitNoCloudSource) (Seed, error) {
	s := Seed{InstanceID: string(vmi.UID), Hostname: vmi.Spec.Hostname, UserData: src.UserData, NetworkData: src.NetworkData}
	if s.Hostname == "" {
		s.Hostname = vmi.Name
	}
	var err error
	if s.UserData, err = decodeVariant("userData", src.UserData, src.UserDataBase64); err != nil {
		return Seed{}, err
	}
	if s.NetworkData, err = decodeVariant("networkData", src.NetworkData, src.NetworkDataBase64); err != nil {
		return Seed{}, err
	}
	return s, s.validate()
}

// decodeVariant returns the plain field or the decoded <field>Base64 one.
func decodeVariant(field, plain, b64 string) (string, error) {
	switch {
	case b64 == "":
		return plain, nil
	case plain != "":
		return "", fmt.Errorf("only one of %s and %sBase64 may be set", field, field)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%sBase64 is not valid base64: %w", field, err)
	}
	return string(b), nil
}

func (s Seed) validate() error {
	switch {
	case s.InstanceID == "":
		return errors.New("the seed needs an instance id (the VMI has no UID)")
	case strings.ContainsAny(s.InstanceID, "\n\r\x00"):
		return fmt.Errorf("instance id %q is not a single line", s.InstanceID)
	case strings.ContainsAny(s.Hostname, "\n\r\x00"):
		return fmt.Errorf("hostname %q is not a single line", s.Hostname)
	case len(s.UserData) > MaxDataSize:
		return fmt.Errorf("user-data is %d bytes, more than the %d allowed", len(s.UserData), MaxDataSize)
	case len(s.NetworkData) > MaxDataSize:
		return fmt.Errorf("network-config is %d bytes, more than the %d allowed", len(s.NetworkData), MaxDataSize)
	}
	return nil
}

// MetaData renders the meta-data file (YAML).
func (s Seed) MetaData() string {
	md := "instance-id: " + s.InstanceID + "\n"
	if s.Hostname != "" {
		md += "local-hostname: " + s.Hostname + "\n"
	}
	return md
}

// files are the seed's files.
func (s Seed) files() []file {
	f := []file{{"meta-data", []byte(s.MetaData())}, {"user-data", []byte(s.UserData)}}
	if s.NetworkData != "" {
		f = append(f, file{"network-config", []byte(s.NetworkData)})
	}
	return f
}
