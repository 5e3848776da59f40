"""The control plane: Kubernetes Services and EndpointSlices in, whole upstream snapshots out.

watch -> cache -> coalesced "changed" signal -> sync rebuilds the whole desired state from the
cache (annotations -> spec, translate) and pushes it to the data plane when it changed.
"""
