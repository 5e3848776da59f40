"""The `kubeferry` program: the composition root above the data plane (`proxy`) and the
control plane (`controller`). Dependencies point one way: kubeferry -> controller -> proxy."""
