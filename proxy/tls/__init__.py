"""TLS termination for the data plane: certificates, their SNI snapshot, and file sources.

  certificate.py  one certificate chain + key, validated, as a frozen `Certificate` with its
                  own ssl.SSLContext (TLS 1.2 minimum, ALPN http/1.1); a self-signed default
  store.py        `CertificateSet` (default + names, exact and `*.` wildcards), a frozen
                  snapshot, and `CertificateStore`, which holds the current one for the
                  listener's SNI callback and swaps it whole in `replace()`
  files.py        the standalone proxy's source: PEM files polled (and re-read on SIGHUP),
                  broken input logged and refused, the last good certificate kept
  redirect.py     308 to https for routes with `https_redirect`, and the HSTS field

Whoever owns the certificates (these files, or the controller from Secrets) builds a whole
`CertificateSet` and calls `CertificateStore.replace`; nothing here knows about Kubernetes.
Nothing is re-exported here, so the request path (redirect.py) does not load the X.509 code.
"""
