"""The Gateway API model (issue 12): pure functions from the cached Gateway API objects to the
desired state, `build(GatewayInputs) -> GatewayState` (state.py). No I/O here: the watches,
status writes and per-Gateway Services are the sync's (controller/sync.py and friends).

  fields.py     typed readers of raw JSON; GatewayObjectError names the field
  objects.py    GatewayClass, Gateway, ReferenceGrant: raw CRD dicts -> frozen objects
  httproute.py  HTTPRoute: raw CRD dict -> frozen object
  hostnames.py  listener x route hostname intersection
  graph.py      listener validity, conflicts, route attachment
  references.py ReferenceGrants, certificateRefs and backendRefs resolved or refused
  rules.py      HTTPRoute rules as data-plane matches and filters
  ports.py      internal port per (Gateway, listener port)
  translate.py  graph -> ListenerSpecs and the Service backends they use
  status.py     the desired .status of GatewayClasses, Gateways, HTTPRoutes
  state.py      GatewayInputs, GatewayState, build()
  memo.py       work saved between builds (parses, compiled rules, Routes, RouteTables)
"""
