"""deployment-agent: keeps a pool of Docker containers healthy and right-sized.

The embeddable scorer lives in `agent.scoring`; the service starts from
`agent.interfaces.cli` (`deployment-agent run`).
"""
__version__ = "0.1.0"
