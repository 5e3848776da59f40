"""Real control-plane fixtures (etcd, kube-apiserver, kube-controller-manager); filled in by the control-plane work."""
