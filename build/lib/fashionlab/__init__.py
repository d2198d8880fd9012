"""fashionlab: multi-task fashion image classifiers, embeddings, visual search and recommendation."""

from fashionlab.resolvers import register as _register_resolvers

__version__ = "0.1.0"

_register_resolvers()
