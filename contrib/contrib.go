// Package contrib holds the files tpm-u2f installs into the system: the
// systemd user unit, the udev rules and the modules-load.d entry, embedded
// so that `tpm-u2f install` needs nothing but the binary.
package contrib

import _ "embed"

// SystemdUnit is the systemd user unit; @BIN@ stands for the binary's path.
//
//go:embed tpm-u2f.service
var SystemdUnit string

// UdevRules gives the tpm-u2f group /dev/uhid and the user the key's
// hidraw node.
//
//go:embed 70-tpm-u2f.rules
var UdevRules string

// ModulesLoad loads uhid at boot.
//
//go:embed tpm-u2f-modules.conf
var ModulesLoad string
