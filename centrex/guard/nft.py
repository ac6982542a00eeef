"""The guard's nftables table: bans dropped in the kernel before Asterisk sees a packet.

One table of its own (``inet centrex_bans_<instance>``), touching nothing else: an ``accept`` in
its chain ends only its own chain, and it is created and deleted whole. Bans are elements of a
set with a timeout, so they expire in the kernel even with the guard dead. The same chain caps
each source's packets to the SIP port (a flood of unauthenticated requests never reaches
Asterisk's authentication). Everything goes through the ``nft`` command (needs CAP_NET_ADMIN).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from centrex.core.sip_bans import IPAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Rules of the ``sip`` chain (allow, ban and flood, each for v4 and v6): fewer means someone
#: flushed the table, and it is rebuilt.
SIP_CHAIN_RULES = 6


class NftError(RuntimeError):
    pass


def table_name(instance: str) -> str:
    return "centrex_bans_" + re.sub(r"[^A-Za-z0-9_]", "_", instance)


@dataclass(frozen=True)
class NftTable:
    name: str
    sip_ports: tuple[int, ...]
    allow: tuple[Network, ...]
    flood_packets_per_s: int  # 0: no cap
    flood_burst: int
    nft: str = "nft"

    def ruleset(self) -> str:
        """The whole table, created from nothing in one transaction (the empty ``table`` line
        makes the ``delete`` valid whether or not it existed)."""
        ports = ", ".join(str(p) for p in self.sip_ports)

        def allow(version: int) -> str:
            nets = [str(n) for n in self.allow if n.version == version]
            return f"elements = {{ {', '.join(nets)} }}" if nets else ""

        flood = ""
        if self.flood_packets_per_s:
            rate = f"limit rate over {self.flood_packets_per_s}/second"
            rate += f" burst {self.flood_burst} packets"
            flood = (
                f"update @flood4 {{ ip saddr {rate} }} counter drop\n"
                f"    update @flood6 {{ ip6 saddr {rate} }} counter drop"
            )
        else:  # keep the rule count: a no-op rule each
            flood = "ip saddr @flood4 counter\n    ip6 saddr @flood6 counter"
        return f"""table inet {self.name} {{}}
delete table inet {self.name}
table inet {self.name} {{
  set banned4 {{ type ipv4_addr; flags timeout; }}
  set banned6 {{ type ipv6_addr; flags timeout; }}
  set allow4 {{ type ipv4_addr; flags interval; {allow(4)} }}
  set allow6 {{ type ipv6_addr; flags interval; {allow(6)} }}
  set flood4 {{ type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }}
  set flood6 {{ type ipv6_addr; size 65536; flags dynamic,timeout; timeout 60s; }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    meta l4proto {{ udp, tcp }} th dport {{ {ports} }} jump sip
  }}
  chain sip {{
    ip saddr @allow4 accept
    ip6 saddr @allow6 accept
    ip saddr @banned4 counter drop
    ip6 saddr @banned6 counter drop
    {flood}
  }}
}}
"""

    async def _run(self, *args: str, script: str | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            self.nft, *args,
            stdin=asyncio.subprocess.PIPE if script is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate(script.encode() if script is not None else None)
        if process.returncode != 0:
            raise NftError(f"nft {' '.join(args)}: {err.decode(errors='replace').strip()}")
        return out.decode()

    async def create(self) -> None:
        await self._run("-f", "-", script=self.ruleset())

    async def delete(self) -> None:
        await self._run(
            "-f", "-", script=f"table inet {self.name} {{}}\ndelete table inet {self.name}\n"
        )

    async def intact(self) -> bool:
        """The table exists with every rule of its ``sip`` chain."""
        try:
            listing = json.loads(await self._run("-j", "list", "chain", "inet", self.name, "sip"))
        except NftError:
            return False
        rules = [item for item in listing["nftables"] if "rule" in item]
        return len(rules) == SIP_CHAIN_RULES

    async def banned(self) -> dict[IPAddress, int]:
        """Addresses in the ban sets, with the seconds their element has left."""
        out: dict[IPAddress, int] = {}
        for name in ("banned4", "banned6"):
            listing = json.loads(await self._run("-j", "list", "set", "inet", self.name, name))
            for item in listing["nftables"]:
                for elem in item.get("set", {}).get("elem", []):
                    if isinstance(elem, dict):
                        inner = elem.get("elem", {})
                        out[ipaddress.ip_address(inner["val"])] = int(inner.get("expires", 0))
                    else:
                        out[ipaddress.ip_address(elem)] = 0
        return out

    async def apply(self, add: dict[IPAddress, int], remove: Iterable[IPAddress]) -> None:
        """Add bans (address -> seconds) and remove others, in one transaction."""
        lines = []
        for address in remove:
            lines.append(f"delete element inet {self.name} {_set(address)} {{ {address} }}")
        for address, seconds in add.items():
            element = f"{address} timeout {max(1, seconds)}s"
            lines.append(f"add element inet {self.name} {_set(address)} {{ {element} }}")
        if lines:
            await self._run("-f", "-", script="\n".join(lines) + "\n")


def _set(address: IPAddress) -> str:
    return "banned4" if address.version == 4 else "banned6"
