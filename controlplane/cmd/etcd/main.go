// Command etcd is etcd's own server entry point, built from this module so it
// shares the pinned etcd version with kube-apiserver's client.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
