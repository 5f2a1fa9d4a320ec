"""CHANNEL_LAYERS for tests that run a Redis of their own."""

import copy

from django.conf import settings


def channel_layers_at(url: str, **host_options) -> dict:
    """settings.CHANNEL_LAYERS (every alias, the product's backends and options) with every Redis
    host's address set to `url` and `host_options` added."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for layer in layers.values():
        layer["CONFIG"]["hosts"] = [{**host, "address": url, **host_options} for host in layer["CONFIG"]["hosts"]]
    return layers
