"""Genesys Cloud regions: SDK region name -> API domain (purecloud_region_hosts.py in the official SDK).

The login host is the API host with ``api.`` replaced by ``login.`` (the SDK's own rule).
"""

from __future__ import annotations

REGION_DOMAINS: dict[str, str] = {
    "us-east-1": "mypurecloud.com",
    "eu-west-1": "mypurecloud.ie",
    "ap-southeast-2": "mypurecloud.com.au",
    "ap-northeast-1": "mypurecloud.jp",
    "eu-central-1": "mypurecloud.de",
    "us-west-2": "usw2.pure.cloud",
    "ca-central-1": "cac1.pure.cloud",
    "ap-northeast-2": "apne2.pure.cloud",
    "eu-west-2": "euw2.pure.cloud",
    "ap-south-1": "aps1.pure.cloud",
    "us-east-2": "use2.us-gov-pure.cloud",
    "sa-east-1": "sae1.pure.cloud",
    "me-central-1": "mec1.pure.cloud",
    "ap-northeast-3": "apne3.pure.cloud",
    "eu-central-2": "euc2.pure.cloud",
    "mx-central-1": "mxc1.pure.cloud",
    "ap-southeast-1": "apse1.pure.cloud",
    "eusc-de-east-1": "edee1.eusc-pure.cloud",
}


def resolve_domain(value: str) -> str:
    """Map a domain (``usw2.pure.cloud``), a host (``api.usw2.pure.cloud``) or a region name
    (``us-west-2`` / ``us_west_2``) to the org's domain. Raises ValueError listing the valid values."""
    text = value.strip().lower().removeprefix("https://").rstrip("/")
    text = text.removeprefix("api.").removeprefix("login.")
    if text in REGION_DOMAINS.values():
        return text
    region = text.replace("_", "-")
    if region in REGION_DOMAINS:
        return REGION_DOMAINS[region]
    valid = ", ".join(f"{name} ({domain})" for name, domain in REGION_DOMAINS.items())
    raise ValueError(f"unknown Genesys Cloud environment {value!r}; valid values: {valid}")
