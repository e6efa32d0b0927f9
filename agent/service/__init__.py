"""The service: the tick loop (`runtime`), the wiring of real parts (`wiring`),
the latest-value fan-out (`hub`) and the Prometheus registry (`metrics`)."""
