"""Where the heavy crypto kernels run: this process's threads (default), worker processes of
this machine (``processes``: encryption on every core, no GIL shared) or a Ray cluster.

``use_executor(kind, address)`` is what a node calls at start-up with its ``[[party]]``
``executor`` and ``ray_address`` keys; ``current_executor()`` is what the kernels ask.
"""

from fedcredit.crypto.executors.base import (
    Decryptor,
    Executor,
    current_executor,
    set_executor,
)
from fedcredit.crypto.executors.threads import ThreadExecutor
from fedcredit.errors import ConfigError

#: The values of ``[[party]] executor``.
EXECUTORS = ("threads", "processes", "ray")


def use_executor(kind: str, address: str | None = None) -> Executor:
    """Make ``kind`` (``"threads"``, ``"processes"`` or ``"ray"``) the executor of this process and return it.

    ``"ray"`` joins the cluster at ``address`` (``"local"`` starts one on this machine); a
    missing Ray installation or an unreachable cluster is a ConfigError naming the key.
    """
    executor: Executor
    if kind == "threads":
        executor = ThreadExecutor()
    elif kind == "processes":
        from fedcredit.crypto.executors.processes import ProcessExecutor

        executor = ProcessExecutor()
    elif kind == "ray":
        if not address:
            raise ConfigError("executor = 'ray' needs a ray_address ('local' or the cluster's)")
        # Imported here: Ray is an optional extra, loaded only by a node that asks for it.
        from fedcredit.crypto.executors.ray_executor import RayExecutor
        from fedcredit.errors import CryptoError

        try:
            executor = RayExecutor(address)
        except CryptoError as exc:
            raise ConfigError(f"ray_address {address!r}: {exc}") from exc
    else:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {kind!r}")
    old = set_executor(executor)
    if old is not None and old is not executor:
        old.close()
    return executor


__all__ = [
    "EXECUTORS",
    "Decryptor",
    "Executor",
    "ThreadExecutor",
    "current_executor",
    "set_executor",
    "use_executor",
]
