"""What makes a service a demo service: the one rule, for every page that labels them.

The demo (demo/simulator.py) names its services with this prefix and marks
their resource with `monoenv.demo=true`; a user's own service is never
taken for one unless it chooses such a name.
"""

DEMO_PREFIX = "demo-"
DEMO_RESOURCE_ATTRIBUTE = "monoenv.demo"


def is_demo(service_name: str) -> bool:
    return service_name.startswith(DEMO_PREFIX)
