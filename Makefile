# tpm-u2f. `make demo` and `make test` are the two commands a new machine
# needs: each first checks (and, as root, installs) the Debian packages it
# uses, through scripts/deps.sh.

SHELL     := /bin/bash
GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/tpm-u2f
FUZZTIME  ?= 10s
CRASH_TRIALS ?= 300
# Packages with goroutines of their own run under the race detector.
RACE_PKGS := ./token/... ./tpm/... ./replay/... ./pin/... ./presence/... ./control/... ./credstore/... ./tray/... ./internal/... ./cmd/... ./uv/... ./largeblob/... ./bench/...

.PHONY: all build test demo bench fuzz lint deps clean e2e e2e-deb tray-screenshot reliability corpus deb rpm deb-check package-files

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tpm-u2f

demo: deps build
	$(BIN) demo

test: deps lint
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race $(RACE_PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 200x ./tpm/... ./token/... ./replay/...
	# The daemon binary as a client sees it (bench/e2e): (request - PING) / bare TPM work.
	$(GO) test -run '^$$' -bench . -benchtime 200x ./bench/...

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# The long reliability runs (docs/reliability.md): hundreds of SIGKILLs
# under real clients on swtpm, a TPM fault at every command of every
# operation, hostile CTAPHID clients, then every fuzz target for FUZZTIME.
# `make test` runs the same tests in a bounded form.
reliability: deps
	set -o pipefail; CRASH_TRIALS=$(CRASH_TRIALS) TPM_U2F_REQUIRE_ALL=1 $(GO) test -count=1 -timeout 90m -v \
	  -run 'TestCrashTrials|TestPINRetriesSurviveSIGKILL|TestCrashBetweenRecordAndResponse|TestSWTPMRestartUnderDaemon|TestKilledDaemonKeepsCredentialsAndCounter' ./interop \
	  | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|(SIGKILL|crashes|restarts|trials)'
	set -o pipefail; $(GO) test -count=1 -v -run 'TestTPMFaultAtEveryCommand|TestPINCheckKilledAtEveryCommand|TestHostileClients|TestNoisyNeighbour|TestPINCheckSurvivesLostSessions' \
	  ./token/... ./tpm/... | grep -E '^(--- |ok|FAIL)|faulted|killed PIN|heap'
	scripts/fuzz.sh $(FUZZTIME)

# Seed corpora from real traffic: the python-fido2 interop tests through
# a capturing proxy (interop/capture_test.go).
corpus: deps
	TPM_U2F_CAPTURE_CORPUS=1 $(GO) test -count=1 -run 'TestPythonFido2U2F$$|TestPythonFido2CTAP2|TestPythonFido2ClientPIN' ./interop

# The QEMU guest suite: the daemon on a real kernel's /dev/uhid and
# /dev/tpmrm0 (swtpm), driven by libfido2's tools (scripts/e2e/run.sh).
e2e:
	scripts/e2e/run.sh

# The .deb on a real system: make deb's package installed with dpkg in a
# Debian bookworm QEMU guest booted with systemd (swtpm as /dev/tpmrm0),
# the user unit up in an emulated graphical session, libfido2 signing as
# the user, then dpkg -r, -i and -P (scripts/e2e/deb.sh; docs/e2e.md).
e2e-deb: deb
	scripts/e2e/deb.sh

# The tray icon in a real StatusNotifierItem host (xfce4-panel under
# Xvfb): redraws docs/img/tray-*.png.
tray-screenshot:
	scripts/tray-screenshot.sh

# Installable packages with nfpm (a Go tool dependency: go tool nfpm),
# configured in packaging/nfpm.yaml; written to build/. The man page and
# the completions come from the binary itself (tpm-u2f manpage,
# tpm-u2f completion), the version from git (packaging/version.sh).
PKG_VERSION    ?= $(shell packaging/version.sh 2>/dev/null || echo 0.0~unknown)
PKG_ARCH       ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= tpm-u2f developers <tpm-u2f@users.noreply.github.com>
PKG_OUT        ?= build
# Debian's hardening flags for the C code of the embedded simulator.
PKG_CFLAGS     ?= -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong
PKGROOT        := build/pkgroot
NFPM            = PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' PKG_MAINTAINER='$(PKG_MAINTAINER)' $(GO) tool nfpm

package-files:
	rm -rf $(PKGROOT) && mkdir -p $(PKGROOT)
	CGO_CFLAGS='$(PKG_CFLAGS)' $(GO) build -trimpath -buildmode=pie -ldflags "-s -w -extldflags '-Wl,-z,relro,-z,now' $(LDFLAGS)" -o $(PKGROOT)/tpm-u2f ./cmd/tpm-u2f
	objcopy --remove-section=.comment $(PKGROOT)/tpm-u2f
	$(PKGROOT)/tpm-u2f manpage | gzip -9n > $(PKGROOT)/tpm-u2f.1.gz
	$(PKGROOT)/tpm-u2f completion bash > $(PKGROOT)/tpm-u2f.bash
	$(PKGROOT)/tpm-u2f completion zsh > $(PKGROOT)/_tpm-u2f
	sed 's|@BIN@|/usr/bin/tpm-u2f|g' contrib/tpm-u2f.service > $(PKGROOT)/tpm-u2f.service
	packaging/changelog.sh '$(PKG_VERSION)' '$(PKG_MAINTAINER)' | gzip -9n > $(PKGROOT)/changelog.gz

deb: package-files
	$(NFPM) package -f packaging/nfpm.yaml -p deb -t $(PKG_OUT)/

rpm: package-files
	$(NFPM) package -f packaging/nfpm.yaml -p rpm -t $(PKG_OUT)/

# Builds the .deb, checks its contents (dpkg-deb -c/-I) and runs lintian
# on it, and builds the .rpm (its contents checked where rpm is
# installed): packaging/deb_test.go.
deb-check:
	TPM_U2F_PACKAGE_TEST=1 $(GO) test -count=1 -v -run 'TestDeb|TestRPM|TestVersionScript' ./packaging

clean:
	rm -rf bin build
