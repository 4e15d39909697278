"""Model kinds: what differs between a 28×28 Fashion-MNIST model and a photo model, one folder
each behind the protocol of ``base.Kind``; ``registry.kind_named`` finds a kind by the name its
runs record in config.json (``apparel.contract``).

This file imports nothing, so that a kind's low modules (its pixel pipeline, its data) can be
imported without loading every kind."""
