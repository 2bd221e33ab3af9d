"""The DNS layer's facts about one pool, as GET /api/pools shows them under "dns".

`instances[ADDRESS].last_answered_s_ago` is what a DNS-aware upgrade needs: an address handed
out t seconds ago may sit in caches for `max_ttl - t` more seconds (plus whatever a resolver adds).
"""

from __future__ import annotations

from tidegate.dns.zone import Zone


def describe_pool(zone: Zone, pool: str) -> dict[str, object] | None:
    specs = [s for s in zone.records.values() if s.pool == pool]
    if not specs:
        return None
    zone.refresh()
    cands = zone.candidates(pool)
    now = zone.figures.clock()
    records: dict[str, object] = {}
    answered: dict[str, int] = {}
    last: dict[str, float] = {}
    for spec in specs:
        fig = zone.figures.record(spec.key)
        records[spec.key] = {
            "ttl": spec.ttl,
            "answers": spec.answers,
            "queries": fig.queries,
            "queries_per_s": round(fig.rate.per_second(), 2),
            "fail_open": fig.fail_open,
            "answers_per_address": dict(fig.answers),
        }
        for ip, n in fig.answers.items():
            answered[ip] = answered.get(ip, 0) + n
        for ip, t in fig.last_answered.items():
            last[ip] = max(last.get(ip, t), t)
    in_answers = sorted(cands.ips) if cands else []
    instances: dict[str, object] = {}
    if cands is not None and zone.pools.get(pool) is not None:
        for inst in zone.pools[pool]:
            normal = _normal_ip(inst.host)
            instances[inst.address] = {
                "ip": normal,
                "in_answers": normal in cands.ips,
                "answered": answered.get(normal, 0) if normal else 0,
                "last_answered_s_ago": round(now - last[normal], 3) if normal in last else None,
            }
    return {
        "max_ttl": max(s.ttl for s in specs),
        "negative_ttl": zone.negative_ttl,
        "zone": zone.origin.to_text(),
        "serial": zone.serial,
        "in_answers": in_answers,
        "fail_open": bool(cands and cands.fail_open),
        "skipped": list(cands.skipped) if cands else [],
        "records": records,
        "instances": instances,
    }


def _normal_ip(host: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None
