"""Model code that is not bounded by construction runs in a disposable process with OS limits.

Why a process: a time limit inside the interpreter (a trace function, a signal) cannot stop work inside C code
(`re.match('(a+)+$', ...)`, `10**10**8`), a script can catch it, and nothing inside one interpreter caps memory
or keeps one script from changing what the next one sees. A forked child with RLIMIT_CPU, RLIMIT_AS and a
wall-clock kill can be stopped whatever it does, and whatever it changes dies with it.

Why a host: forking the engine's own process costs with its size (7 ms at 75 MB, 18 ms at 280 MB, measured)
and would copy open database connections and threads into the child. So the engine starts one small host
process (`serve`, no SpiffWorkflow, no database) the first time it needs one; the host forks one child per
evaluation (about 2 ms). The engine talks to the child directly over a socket pair it made for that
evaluation and hands the child's end to the host (SCM_RIGHTS): it sends the compiled code and the task data,
answers the child's calls of engine helpers that read the store (`task_performer`), and receives the result.
The host reaps each child when the engine says so, after killing it: a pid is never reused under the engine.
After each evaluation the engine asks for the next child at once (`_spare`), so the fork overlaps the engine's
own work instead of the next script's (measured under load: 8 ms against 23 ms per evaluation).

Results come back as pickles read by an unpickler that builds only data types (`_DataUnpickler`): a child that
escaped the sandbox still cannot make the engine run code.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import marshal
import math
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pmoflow.engine import restricted

_HEADER = struct.Struct("!I")  # a frame: its length, then a pickle
_COMMAND = struct.Struct("!cqq")  # to the host: F(ork) cpu-seconds memory-bytes | K(ill, reap, reply) pid 0
# | R(elease: kill and reap, no reply) pid 0
_REPLY = struct.Struct("!q")  # from the host: the child's pid, or its wait status
EXIT_MEMORY = 3  # the child ran out of memory and could not even report it
GRACE = 0.25  # seconds the engine waits past the limit for the child to report where it was


@dataclass(frozen=True)
class Limits:
    """What one evaluation of model code may use. Set by environment variables so an operator (and the
    tests) can tighten them: PMOFLOW_SCRIPT_SECONDS (wall clock), PMOFLOW_SCRIPT_MEMORY_MB."""

    seconds: float = 2.0
    memory_mb: int = 256

    @property
    def cpu_seconds(self) -> int:
        return max(1, math.ceil(self.seconds))  # RLIMIT_CPU counts whole seconds

    @classmethod
    def from_env(cls) -> Limits:
        return cls(seconds=_number("PMOFLOW_SCRIPT_SECONDS", cls.seconds),
                   memory_mb=int(_number("PMOFLOW_SCRIPT_MEMORY_MB", cls.memory_mb)))


def _number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class ScriptError(Exception):
    """An exception model code raised in the sandbox, carried back under its own type name (a SystemExit or
    KeyboardInterrupt there is only an error here) with the script line it came from."""

    script_line: int | None = None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # the message as the script's exception gave it


_ERROR_TYPES: dict[str, type[ScriptError]] = {}


def script_error(type_name: str, message: str, line: int | None = None) -> ScriptError:
    """A ScriptError whose class is named like the exception the script raised, so reports say `ValueError`;
    for a builtin Exception it is also one (`except NameError` still works). A SystemExit or KeyboardInterrupt
    of a script is only a ScriptError here: it must not stop the engine."""
    name = type_name if type_name.isidentifier() else "ScriptError"
    if name not in _ERROR_TYPES:
        builtin = getattr(builtins, name, None)
        also = (builtin,) if isinstance(builtin, type) and issubclass(builtin, Exception) \
            and builtin is not Exception else ()
        try:
            _ERROR_TYPES[name] = type(name, (ScriptError, *also), {})
        except TypeError:  # a builtin whose layout cannot be combined (OSError's family)
            _ERROR_TYPES[name] = type(name, (ScriptError,), {})
    error = _ERROR_TYPES[name](message)
    error.script_line = line
    return error


class ScriptTimeout(ScriptError):
    """Model code ran past its time limit."""


_ERROR_TYPES["ScriptTimeout"] = ScriptTimeout


class SandboxBroken(RuntimeError):
    """The sandbox process could not be started or talked to (not the script's fault)."""


# -- frames -------------------------------------------------------------------------------------------------


def _send(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket, limit: int, loads: Callable[[bytes], Any] = pickle.loads) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > limit:
        raise _TooLarge(size)
    return loads(_recv_exact(sock, size))


class _TooLarge(Exception):
    pass


class _DataUnpickler(pickle.Unpickler):
    """Builds data and nothing else: what a child sends can name only these classes."""

    ALLOWED = {("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
               ("decimal", "Decimal"), ("uuid", "UUID"), ("uuid", "SafeUUID")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not data")


def _data_loads(data: bytes) -> Any:
    return _DataUnpickler(io.BytesIO(data)).load()


# -- the child: runs one piece of model code ----------------------------------------------------------------


def _child(channel: socket.socket, cpu_seconds: int, memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory, mapped + memory))
    mode, code, context, external, helper_names, seconds = pickle.loads(_recv_exact(channel, _HEADER.unpack(
        _recv_exact(channel, _HEADER.size))[0]))
    _alarm(channel, seconds)
    answer: tuple[Any, ...]
    try:
        answer = ("ok", _run(channel, mode, marshal.loads(code), context, external, helper_names))
    except MemoryError:
        answer = ("error", "MemoryError", f"the script used more than its memory limit of {memory // 2**20} MB", None)
    except restricted.Unstorable as exc:
        answer = ("error", "UnstorableValue", str(exc), None)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt ...: here they are only the script's error
        answer = ("error", type(exc).__name__, _text(exc), _script_line(exc))
    signal.setitimer(signal.ITIMER_REAL, 0)
    _send(channel, answer)


def _alarm(channel: socket.socket, seconds: float) -> None:
    """At the time limit, report the script line the child was running, and end. A signal handler runs only
    between bytecodes, so code stuck inside C never gets here: the engine kills it a little later instead.
    The handler ends the process itself, so no `except` in the script can swallow the timeout."""

    def on_alarm(signum, frame) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        while frame is not None and frame.f_code.co_filename != restricted.SCRIPT_FILE:
            frame = frame.f_back
        _send(channel, ("error", "ScriptTimeout", f"script exceeded its time limit of {seconds:g} s",
                        frame.f_lineno if frame is not None else None))
        os._exit(0)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _run(channel: socket.socket, mode: str, code, context: dict, external: dict, helper_names: list[str]) -> Any:
    helpers = {name: _parent_helper(channel, name) for name in helper_names}
    namespace = {**restricted.guards(), **restricted.STANDARD_HELPERS, **helpers, **external, **context}
    if mode == "eval":
        return restricted.plain_data(eval(code, namespace), "the expression's value")
    exec(code, namespace)
    hidden = restricted.GUARD_NAMES | set(restricted.STANDARD_HELPERS) | set(helpers) | set(external)
    return {key: restricted.plain_data(value, key) for key, value in namespace.items()
            if key not in hidden and restricted.is_data(key, value)}


def _parent_helper(channel: socket.socket, name: str) -> Callable[..., Any]:
    """A helper the engine answers (it reads the store, which the child must never touch)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        request = ("call", name, restricted.plain_data(list(args), "arguments"),
                   restricted.plain_data(kwargs, "arguments"))
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)  # the engine's time is not the script's
        _send(channel, request)
        kind, value = pickle.loads(_recv_exact(channel, _HEADER.unpack(_recv_exact(channel, _HEADER.size))[0]))
        signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001))
        if kind == "error":
            raise RuntimeError(f"{name}: {value}")
        return value

    call.__name__ = name
    return call


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 (a script's exception class may break its own str)
        return ""


def _script_line(exc: BaseException) -> int | None:
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if frame.filename == restricted.SCRIPT_FILE]
    return lines[-1] if lines else None


# -- the host: forks children ---------------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The host process's loop: fork a child per request, kill and reap it when told. Ends with the engine."""
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C at a terminal is the engine's to handle
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, _COMMAND.size, 1)
            if not message:
                return
            if len(message) < _COMMAND.size:
                message += _recv_exact(sock, _COMMAND.size - len(message))
            command, first, second = _COMMAND.unpack(message)
            if command == b"F" and fds:
                sock.sendall(_REPLY.pack(_fork(sock, fds[0], first, second)))
            elif command == b"K":
                sock.sendall(_REPLY.pack(_kill(first)))
            elif command == b"R":
                _kill(first)
        except (EOFError, OSError):  # the engine has gone (its children follow: their sockets close)
            return


def _fork(host: socket.socket, fd: int, cpu_seconds: int, memory: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            host.close()
            _child(socket.socket(fileno=fd), cpu_seconds, memory)
        except MemoryError:
            code = EXIT_MEMORY
        except BaseException:  # noqa: BLE001 (the engine reads what went wrong from the missing answer)
            code = 1
        os._exit(code)
    os.close(fd)
    return pid


def _kill(pid: int) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


# -- the engine's side -----------------------------------------------------------------------------------------


class _Host:
    """The engine's handle on its host process: started once per engine process (again after a fork).

    Replies come in the order of the commands that have one (F, K); a child's pid is read when first needed,
    so the host forks the next child while the engine does its own work."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code = f"from pmoflow.engine.sandbox import serve; serve({theirs.fileno()})"
        try:
            self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.sock, self.pid, self.lock = ours, os.getpid(), threading.Lock()
        self.unread: deque[_Child] = deque()  # children whose pid the host has sent and we have not read

    def _send(self, command: bytes, first: int, second: int, fds: list[int] | None = None) -> None:
        socket.send_fds(self.sock, [_COMMAND.pack(command, first, second)], fds or [])

    def _read(self) -> int:
        return _REPLY.unpack(_recv_exact(self.sock, _REPLY.size))[0]

    def spawn(self, limits: Limits) -> _Child:
        """Ask for a child with these limits, talking over a socket pair made for it alone."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                self._send(b"F", limits.cpu_seconds, limits.memory_mb * 2**20, [theirs.fileno()])
                child = _Child(self, ours, limits)
                self.unread.append(child)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return child

    def pid_of(self, child: _Child) -> int:
        with self.lock:
            while child.pid is None:
                self.unread.popleft().pid = self._read()
        return child.pid

    def kill(self, pid: int) -> int:
        """Kill and reap a child; its wait status."""
        with self.lock:
            while self.unread:
                self.unread.popleft().pid = self._read()
            self._send(b"K", pid, 0)
            return self._read()

    def release(self, pid: int) -> None:
        """Kill and reap a child that has answered; no reply to wait for."""
        with self.lock:
            self._send(b"R", pid, 0)

    def close(self) -> None:
        self.sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Child:
    """One child of the host: the socket to it, its pid once read, and the limits it was forked with."""

    def __init__(self, host: _Host, sock: socket.socket, limits: Limits) -> None:
        self.host, self.sock, self.limits = host, sock, limits
        self.pid: int | None = None

    def discard(self) -> None:
        if self.host.pid == os.getpid():  # a forked engine leaves its parent's children alone
            with contextlib.suppress(OSError, EOFError):  # a dead host took its children with it
                self.host.release(self.host.pid_of(self))
        self.sock.close()


_host: _Host | None = None
_spare: _Child | None = None  # forked after the last evaluation, waiting for the next one
_host_lock = threading.Lock()


def _the_host(fresh: bool = False) -> _Host:
    global _host
    with _host_lock:
        if fresh and _host is not None and _host.pid == os.getpid():
            with contextlib.suppress(OSError):
                _host.close()
            _host = None
        if _host is None or _host.pid != os.getpid():  # a forked engine starts its own; the parent's is not ours
            _host = _Host()
        return _host


def _take(limits: Limits) -> _Child:
    """The spare child if it fits, else a new one; a dead host is started again once."""
    global _spare
    with _host_lock:
        child, _spare = _spare, None
    try:
        host = _the_host()
        if child is not None and (child.host is not host or child.limits != limits):
            child.discard()
            child = None
        child = child or host.spawn(limits)
        host.pid_of(child)
        return child
    except (OSError, EOFError):  # the host died (killed by an operator, out of memory)
        if child is not None:
            child.sock.close()
        try:
            host = _the_host(fresh=True)
            child = host.spawn(limits)
            host.pid_of(child)
            return child
        except (OSError, EOFError) as exc:
            raise SandboxBroken(f"the script sandbox process cannot be started: {exc}") from None


def _prepare_spare(limits: Limits) -> None:
    """Have the next child forked while the engine goes on: an evaluation then costs no fork."""
    global _spare
    try:
        child = _the_host().spawn(limits)
    except (OSError, EOFError):
        return  # the next evaluation starts a host
    with _host_lock:
        old, _spare = _spare, child
    if old is not None:
        old.discard()


def _shutdown() -> None:
    if _host is not None and _host.pid == os.getpid():
        if _spare is not None:
            _spare.sock.close()
        _host.close()


import atexit  # noqa: E402 (registered beside what it cleans up)

atexit.register(_shutdown)


def run(mode: str, code, context: Mapping[str, Any], external: Mapping[str, Any],
        helpers: Mapping[str, Callable[..., Any]], limits: Limits) -> Any:
    """Run compiled model code ('exec' or 'eval') in a fresh child; return the expression's value or, for a
    script, the task data it leaves (every value already checked by `restricted.plain_data`). Raises a
    ScriptError named after whatever the code raised, ScriptTimeout past the wall-clock limit."""
    payload = pickle.dumps((mode, marshal.dumps(code), dict(context), dict(external), sorted(helpers),
                            limits.seconds), protocol=pickle.HIGHEST_PROTOCOL)
    child = _take(limits)
    pid = child.pid
    assert pid is not None, "_take returns a child whose pid has been read"
    sock, answered, reaped = child.sock, False, False
    try:
        deadline = time.monotonic() + limits.seconds + GRACE + limits.seconds / 10  # the child's own alarm first
        _with_deadline(sock, deadline, lambda: sock.sendall(_HEADER.pack(len(payload)) + payload))
        while True:
            frame = _with_deadline(sock, deadline, lambda: _recv(sock, limits.memory_mb * 2**20, _data_loads))
            if frame[0] == "call":
                began = time.monotonic()
                _send(sock, _answer(helpers, *frame[1:]))
                deadline += time.monotonic() - began  # the engine's own time is not the script's
                continue
            answered = True
            if frame[0] == "ok":
                return frame[1]
            _, type_name, message, line = frame
            raise script_error(type_name, message, line)
    except TimeoutError:
        raise ScriptTimeout(f"script exceeded its time limit of {limits.seconds:g} s") from None
    except _TooLarge as big:
        raise script_error("UnstorableValue", f"the script's result ({big.args[0] // 2**20} MB) is larger than its "
                                              f"memory limit of {limits.memory_mb} MB") from None
    except (EOFError, ConnectionError, pickle.UnpicklingError) as exc:
        status, reaped = child.host.kill(pid), True
        raise _death(status, limits, exc) from None
    finally:
        if not reaped:
            with contextlib.suppress(OSError, EOFError):  # a dead host takes its children with it
                child.host.release(pid) if answered else child.host.kill(pid)
        sock.close()
        _prepare_spare(limits)


def _with_deadline(sock: socket.socket, deadline: float, action: Callable[[], Any]) -> Any:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)
    return action()


def _answer(helpers: Mapping[str, Callable[..., Any]], name: str, args: list, kwargs: dict) -> tuple[str, Any]:
    try:
        return "ok", restricted.plain_data(helpers[name](*args, **kwargs), name)
    except Exception as exc:  # the helper's failure is the script's error, reported in the child
        return "error", f"{type(exc).__name__}: {exc}"


def _death(status: int, limits: Limits, cause: Exception) -> ScriptError:
    """Why a child ended without answering, from its wait status."""
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        return script_error("ScriptTimeout", f"script exceeded its CPU time limit of {limits.cpu_seconds} s")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_MEMORY:
        return script_error("MemoryError", f"the script used more than its memory limit of {limits.memory_mb} MB")
    if isinstance(cause, pickle.UnpicklingError):
        return script_error("SandboxError", f"the sandbox sent something that is not data ({cause})")
    if os.WIFSIGNALED(status):
        return script_error("SandboxError", f"the script's process was killed (signal {os.WTERMSIG(status)}; "
                                            f"out of memory?)")
    return script_error("SandboxError", f"the script's process ended without an answer (exit status "
                                        f"{os.WEXITSTATUS(status) if os.WIFEXITED(status) else status})")
