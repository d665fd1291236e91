"""Validates CycloneDX 1.6 JSON files with cyclonedx-python-lib's strict
JSON validator (the schema the CycloneDX project publishes): the
independent check of the SBOM stoa-bundler writes (tests/tests/sbom.rs).
Prints "valid <file>" per file; exits 1 naming the first error.
"""
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

validator = JsonStrictValidator(SchemaVersion.V1_6)
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        error = validator.validate_str(f.read())
    if error is not None:
        print(f"invalid {path}: {error}")
        sys.exit(1)
    print(f"valid {path}")
