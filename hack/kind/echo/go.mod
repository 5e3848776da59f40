// The backend and load client of `make kind-test`: one static binary, no dependencies, built by
// hack/kind-images.sh into a FROM-scratch image.
module kubeferry.local/hack/kind/echo

go 1.26
