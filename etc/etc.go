// Package etc embeds the example configuration, so `asbb-admin config init`
// writes the same documented file that ships in etc/.
package etc

import _ "embed"

// Example is etc/asbb.toml.example: every key with its default.
//
//go:embed asbb.toml.example
var Example string
