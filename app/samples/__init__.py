"""Sample events per source type, and signing a body the way each provider does: for trying rules end to end."""

from app.samples.catalog import Sample, find_sample, samples_for
from app.samples.signing import signed_request

__all__ = ["Sample", "find_sample", "samples_for", "signed_request"]
