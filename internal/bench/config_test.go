package bench

import (
	"strings"
	"testing"
	"time"
)

// TestConfigRefusesBadInput checks that every bad size, rate or duration is
// refused with an error naming its flag, and that the defaults pass.
func TestConfigRefusesBadInput(t *testing.T) {
	good := Defaults()
	good.Binary = "/bin/vigil"
	if err := good.validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no binary", func(c *Config) { c.Binary = "" }, "binary"},
		{"no nodes", func(c *Config) { c.Nodes = 0 }, "--nodes"},
		{"no VMs", func(c *Config) { c.VMs = 0 }, "--vms"},
		{"more paced than VMs", func(c *Config) { c.PacedVMs = c.VMs + 1 }, "--paced-vms"},
		{"zero paced rate", func(c *Config) { c.PacedRate = 0 }, "--paced-rate"},
		{"no clients", func(c *Config) { c.Concurrency = 0 }, "--concurrency"},
		{"negative settle", func(c *Config) { c.SteadySettle = -time.Second }, "--steady-settle"},
		{"no steady window", func(c *Config) { c.SteadyWindow = 0 }, "--steady-window"},
		{"negative churn", func(c *Config) { c.ChurnDuration = -time.Second }, "--churn-duration"},
		{"too few nodes for node loss", func(c *Config) { c.Nodes = 5 }, "--nodes is 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
