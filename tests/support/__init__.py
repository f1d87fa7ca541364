"""Test support for the CustomJob CRD and controller (never shipped, neither in the wheel nor the image).

* :mod:`.crd_validation` -- validate CustomJob objects locally the way the API
  server does: defaults, the OpenAPI v3 schema (via jsonschema) and the CEL
  ``x-kubernetes-validations`` (via cel-python).
* :mod:`.crd_strategies` -- hypothesis strategies for schema-valid specs and for
  specs broken in exactly one known way.
"""
