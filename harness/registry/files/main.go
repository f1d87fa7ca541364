// registry: the harness's local image registry (the Docker registry HTTP API v2).
//
// Blobs are kept on disk under $REGISTRY_DATA/blobs so layers survive a
// container restart; manifests live in memory (the library keeps them there),
// so tags must be pushed again after a restart. Layer uploads are buffered in
// memory until they complete.
package main

import (
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func setting(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func main() {
	addr := setting("REGISTRY_ADDR", ":5000")
	blobs := filepath.Join(setting("REGISTRY_DATA", "/var/lib/registry"), "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		log.Fatalf("registry: cannot create %s: %v", blobs, err)
	}
	handler := registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
	server := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	log.Printf("registry: serving on %s, blobs in %s", addr, blobs)
	log.Fatal(server.ListenAndServe())
}
