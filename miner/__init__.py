"""Miner: agent action streams in Redis to grouped preference datasets."""
