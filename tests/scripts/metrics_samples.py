"""Reads a Prometheus text exposition on stdin and prints its samples as JSON lines.

Each line: {"family": ..., "type": ..., "name": ..., "labels": {...}, "value": ...}. The parser
is prometheus-client's (tests/scripts/prometheus_client.sh installs it pinned); a malformed
exposition makes it raise, and this script exit non-zero with its message.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
        }))
