"""Device profiles: presets that mimic a device by thread count and memory budget, so
`edgeseq bench --profile pi4` on a laptop and on the Pi measure like with like. They do
not emulate a slower CPU: run the suite on the device itself for its real speed."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    threads: int
    memory_budget_mb: float | None
    note: str


PROFILES = {
    "pi4": Profile("pi4", 4, 1500, "Raspberry Pi 4 (4x Cortex-A72, 2-8 GB; budget leaves room for the OS)"),
    "pi5": Profile("pi5", 4, 3000, "Raspberry Pi 5 (4x Cortex-A76, 4-8 GB)"),
    "laptop": Profile("laptop", 2, None, "a laptop sharing its cores with other work"),
    "phone": Profile("phone", 2, 800, "a phone-class device: 2 big cores, tight memory"),
}
