"""Data: where text comes from (sources), how it is indexed (vocab), how it is batched."""
