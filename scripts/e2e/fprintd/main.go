// Command fprintd is the e2e guest's fingerprint daemon: fprintd's D-Bus
// API (uv/fprintd/fprintdtest) on the bus at DBUS_SYSTEM_BUS_ADDRESS, with
// one reader and one enrolled finger whose every verification gives the
// -answer (verify-match, verify-no-match, ...).
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

func main() {
	answer := flag.String("answer", "verify-match", "the VerifyStatus result of every verification")
	flag.Parse()
	addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	if addr == "" {
		log.Fatal("fprintd: DBUS_SYSTEM_BUS_ADDRESS is not set")
	}
	s := &fprintdtest.Server{Enrolled: []string{"right-index-finger"}, Always: &fprintdtest.Status{Result: *answer, Done: true}}
	conn, err := s.Start(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	log.Printf("fprintd: serving on %s, answering %s", addr, *answer)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
