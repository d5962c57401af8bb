// Command etcd is etcd's own server main, built at a pinned version for the
// local control plane used by the tests and the demo.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
