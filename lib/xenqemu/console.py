"""A reliable shell command channel over a serial console (dom0's, or a guest's through ``xl``).

:class:`ConsoleChannel` works over any pexpect spawn: a pseudo-terminal (``pexpect.spawn``), a
socket or file descriptor (``pexpect.fdpexpect.fdspawn``), for instance the serial socket that
oe-core's QemuRunner holds.  Serial consoles under Xen are noisy: ``(XEN)`` hypervisor lines and
kernel messages arrive in the middle of command output, sometimes in the middle of a line.  The
protocol copes with that:

* After login the channel installs two small shell functions.  ``run(cmd)`` sends
  ``__xq_run 'ABCDE''FGHIJ' '<cmd>'``: the command runs in the current shell (``command eval``, so
  ``cd`` and variables persist and a syntax error is just a non-zero status) with its output in a
  file, then ``__xq_show`` prints a begin line, the file, and an end line carrying the exit status
  (twice) and the file's md5.  The random marker is split-quoted on the command line, so the echo
  of the command can never contain it (labgrid's technique).
* Markers are found even when noise lines were inserted inside them; the output is checked
  against the md5, noise lines are dropped if that makes it match, and otherwise the saved output
  is shown again (the command is not run again) until two copies agree.
* ``sync()`` echoes a fresh marker together with the shell's identity token and waits for it, so
  after garbage, a timeout or a detach the channel knows it talks to the right shell again.
* Long lines are sent in small chunks, each waited for (its echo) before the next: Xen's serial
  receive ring towards dom0 holds only about 128 bytes.
* Output is cleaned: CR, ANSI escape sequences (including busybox's ``ESC[6n``) removed.

Every command goes to an optional :class:`Transcript` (JSON lines plus a readable log) with its
status and duration.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
import random
import re
import shlex
import string
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import pexpect

from .errors import XenqemuError

__all__ = [
    "CommandResult",
    "ConsoleChannel",
    "ConsoleClosed",
    "ConsoleError",
    "ConsoleStream",
    "ConsoleTimeout",
    "LoginError",
    "Transcript",
    "clean_text",
    "helper_script",
    "identify",
    "make_marker",
]

# ANSI CSI/OSC/two-byte escape sequences; ESC[6n (cursor position query) is a CSI sequence.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]")
#: Lines that are console noise rather than command output: Xen's and the kernel's.
NOISE_LINE = re.compile(r"(?m)^(?:\(XEN\)|\(d\d+\)|\[\s*\d+\.\d+\]).*\n")
# The same, not yet ended: a dom0less guest's "(XEN) DOM1: ... login: " must not pass for dom0's.
NOISE_TAIL = re.compile(r"(?m)^(?:\(XEN\)|\(d\d+\)|\[\s*\d+\.\d+\])[^\n]*\Z")
#: Marker alphabet: upper-case letters without R, I, D (no ERROR/INFO/DEBUG spelled by chance).
_MARKER_LETTERS = "".join(c for c in string.ascii_uppercase if c not in "RID")
_GAP = r"(?:[^\n]+\n){0,3}?"  # up to three noise lines inserted at any point (fewest first)
CTRL_C = "\x03"
CTRL_RIGHT_BRACKET = "\x1d"


def clean_text(text: str) -> str:
    """Remove ANSI escape sequences, carriage returns and stray control characters."""
    text = _ANSI.sub("", text)
    text = text.replace("\r", "")
    return _CONTROL.sub("", text)


def make_marker(length: int = 10) -> str:
    """A random marker of ``length`` upper-case letters (no R, I or D)."""
    return "".join(random.choice(_MARKER_LETTERS) for _ in range(length))


def _split_quoted(marker: str) -> str:
    """``'ABCDE''FGHIJ'``: the shell joins it, but the echoed line never contains the marker."""
    half = len(marker) // 2
    return f"'{marker[:half]}''{marker[half:]}'"


def _common(a: str, b: str) -> str:
    """The characters two copies have in common, in order (noise inserted in one is dropped)."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return "".join(a[block.a:block.a + block.size] for block in matcher.get_matching_blocks())


def _candidates(copies: list[str]) -> Iterator[str]:
    """Possible true outputs given noisy copies; each is checked against the md5 by the caller."""
    latest = copies[-1]
    yield latest
    yield NOISE_LINE.sub("", latest)
    for other in copies[:-1]:
        common = _common(latest, other)
        yield common
        yield NOISE_LINE.sub("", common)


def _tolerant(literal: str) -> str:
    """A regex for ``literal`` that also matches when noise lines were inserted inside it."""
    return _GAP.join(re.escape(c) for c in literal)


def identify(region: str, known: Sequence[str]) -> str | None:
    """Which of the ``known`` identity tokens the text between a sync marker and ``:I`` shows.

    Noise lines may be inserted anywhere in the region, including right after its first
    character or right before its end (a noise line that starts in the middle of the shell's
    line swallows the rest of that line up to its own newline, so ``TOKEN(XEN) ...\n`` is the
    token followed by noise).  The empty identity (a shell without the helpers) is tried last:
    a region made only of whole lines also fits "empty identity plus noise", and a non-empty
    token that fits is far more likely than noise that happens to start with it.  Returns None
    when nothing fits (noise made it unreadable).
    """
    for token in sorted((k for k in known if k), key=len, reverse=True):
        if re.fullmatch(_GAP + _tolerant(token) + _GAP, region):
            return token
    if "" in known and re.fullmatch(_GAP, region):
        return ""
    return None


def helper_script(identity: str, quiet_kernel: bool = True) -> str:
    """The shell line that installs the command protocol's helpers with identity ``identity``.

    Part of a warm-start snapshot's key: a snapshot's shell holds the helpers of the harness
    version that saved it.
    """
    # One line, as short as it can be: every byte typed into dom0's console costs about a quarter
    # of a millisecond under TCG (Xen forwards it character by character, the shell echoes it),
    # and each extra line would add a prompt and a round trip.  Variables are unquoted only where
    # they cannot hold blanks.  No ``set +H`` for bash: everything the channel sends is either
    # free of ``!`` or single-quoted (shlex.quote), where history expansion does not happen.
    quiet = "dmesg -n 1 2>/dev/null;" if quiet_kernel else ""
    return ("stty cols 4000;" + quiet
            + "for __xqf in /tmp /run /;do [ -w $__xqf ]&&break;done;__xqf=$__xqf/.xq$$;"
            "__xq_run(){ command eval \"$2\" >$__xqf 2>&1 </dev/null;echo $? >$__xqf.rc;__xq_show $1;};"
            "__xq_show(){ __xqs=$(cat $__xqf.rc);__xqh=$(md5sum <$__xqf 2>/dev/null);printf 'B:%s\\n' $1;"
            "cat $__xqf;printf '\\nE:%s:%s:%.32s:%s\\n' $1 $__xqs \"$__xqh\" $__xqs;};"
            f"__xq_id={identity}")


class ConsoleError(XenqemuError, RuntimeError):
    """Base class of console failures; the message says what was going on and quotes the log."""


class ConsoleTimeout(ConsoleError):
    """A command or an expected text did not arrive in time."""

    def __init__(self, message: str, command: str | None = None, partial: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.partial = partial


class ConsoleClosed(ConsoleError):
    """The other end went away (QEMU exited, the socket closed)."""


class LoginError(ConsoleError):
    """Login failed (wrong password, no shell)."""


@dataclass
class CommandResult:
    """Exit status and output of one command; unpacks as ``status, output = result``."""

    status: int
    output: str
    command: str = ""
    duration: float = 0.0
    #: False when the output could not be checked against the md5 the shell computed.
    verified: bool = True

    def __iter__(self) -> Iterator[int | str]:
        yield self.status
        yield self.output

    @property
    def ok(self) -> bool:
        """True when the exit status is 0."""
        return self.status == 0

    @property
    def lines(self) -> list[str]:
        """The output split into lines (no trailing empty line)."""
        return self.output.splitlines()


class Transcript:
    """Command log of a run: ``transcript.jsonl`` (one JSON object per command) and a text log."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # kept open for the whole run (closed by close()): one line per command, flushed
        self._json: TextIO = open(self.directory / "transcript.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._text: TextIO = open(self.directory / "transcript.log", "a", encoding="utf-8")  # noqa: SIM115

    def record(self, channel: str, command: str, status: int | None, duration: float,
               output: str, note: str = "") -> None:
        """Append one command with its status (None = did not finish), duration and output."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "channel": channel, "command": command,
                 "status": status, "duration": round(duration, 3), "output_bytes": len(output)}
        if note:
            entry["note"] = note
        self._json.write(json.dumps(entry) + "\n")
        self._json.flush()
        shown = ("TIMEOUT" if note == "timeout" else "-") if status is None else status
        self._text.write(f"[{entry['time']}] {channel}$ {command}\n")
        if output:
            self._text.write(output if output.endswith("\n") else output + "\n")
        self._text.write(f"  -> status {shown} in {duration:.2f}s{(' (' + note + ')') if note else ''}\n")
        self._text.flush()

    def close(self) -> None:
        """Close the log files."""
        self._json.close()
        self._text.close()


class ConsoleStream:
    """The byte stream shared by all channels on one console (dom0 and nested guests).

    Holds the spawn, a cleaned text buffer of what was received and not yet consumed, and an
    optional liveness check (called while waiting; it raises when the other end is dead).
    """

    def __init__(self, spawn: pexpect.spawnbase.SpawnBase,
                 liveness: Callable[[], None] | None = None) -> None:
        self.spawn = spawn
        self.liveness = liveness
        self.buffer = ""
        self.max_buffer = 8 * 1024 * 1024
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _decode(self, data: bytes | str) -> str:
        return data if isinstance(data, str) else self._decoder.decode(data)

    def fill(self, timeout: float) -> bool:
        """Read what arrives within ``timeout`` into the buffer; True if anything came."""
        try:
            data = self.spawn.read_nonblocking(65536, timeout=max(0.0, timeout))
        except pexpect.TIMEOUT:
            self.check_alive()
            return False
        except (pexpect.EOF, OSError):  # OSError: connection reset by the peer
            if self.liveness is not None:
                # the socket may close a moment before the process is seen to exit
                for _ in range(30):
                    self.check_alive()
                    time.sleep(0.1)
            raise ConsoleClosed("the console closed (end of file): the machine or the program "
                                "behind the console went away") from None
        text = self._decode(data)
        if text:
            # the buffer is already clean; only its tail can hold half an escape sequence
            head, tail = self.buffer[:-64], self.buffer[-64:]
            self.buffer = head + clean_text(tail + text)
            if len(self.buffer) > self.max_buffer:
                self.buffer = self.buffer[-self.max_buffer:]
        return bool(text)

    def check_alive(self) -> None:
        """Run the liveness check, if any."""
        if self.liveness is not None:
            self.liveness()

    def drain(self, quiet: float = 0.2, limit: float = 2.0) -> str:
        """Read until ``quiet`` seconds pass without data (at most ``limit``); return and clear."""
        end = time.monotonic() + limit
        while time.monotonic() < end and self.fill(quiet):
            pass
        text, self.buffer = self.buffer, ""
        return text

    def send(self, text: str) -> None:
        """Send raw text."""
        self.spawn.send(text)

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str] | None:
        """Wait until ``pattern`` matches in the buffer; consume through the match; None on timeout."""
        while True:
            m = pattern.search(self.buffer)
            if m:
                self.buffer = self.buffer[m.end():]
                return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.fill(min(0.5, remaining))


#: A shell prompt at the very end of the output.
SHELL_PROMPT = re.compile(r"[#$][ \t]*$")
#: A login or shell prompt at the very end of the output.
ANY_PROMPT = re.compile(r"(?:login:|[#$])[ \t]*$")


@dataclass
class _LoginAttempt:
    """What one login has done so far."""

    user: str
    password: str | None
    failures: int = 0
    sent_user: bool = False
    sent_password: bool = False
    #: seconds the next shell probe waits for an answer
    probe: float = 3.0


@dataclass(frozen=True)
class _Prompts:
    """The login and password prompts a channel answers."""

    login: re.Pattern[str]
    password: re.Pattern[str]

    def recognised(self, tail: str) -> bool:
        """True when ``tail`` ends in something login() acts on."""
        return bool("Login incorrect" in tail or self.login.search(tail) or self.password.search(tail)
                    or SHELL_PROMPT.search(tail))


@dataclass
class _Settings:
    chunk_size: int = 48
    #: chunks sent before the first one's echo is awaited (2 x 48 bytes stay below Xen's 128-byte ring)
    chunks_in_flight: int = 2
    echo_timeout: float = 3.0
    #: seconds of silence while awaiting a prompt before a newline asks for it again
    nudge_after: float = 5.0
    login_prompt: str = r"login:\s*$"
    password_prompt: str = r"[Pp]assword:\s*$"
    quiet_kernel: bool = True
    extra_setup: list[str] = field(default_factory=list)


class ConsoleChannel:
    """Run shell commands over a console and get ``CommandResult(status, output)`` back.

    ``spawn`` is any pexpect spawn (or a :class:`ConsoleStream` to share one with other channels).
    ``name`` labels the transcript.  ``parent`` is the channel this one is nested in (a guest
    console reached from dom0 with ``xl create -c``/``xl console``); :meth:`detach` returns to it.
    ``quiet_kernel`` runs ``dmesg -n 1`` after login so kernel messages stay off the console.
    """

    def __init__(self, spawn: pexpect.spawnbase.SpawnBase | ConsoleStream, *, name: str = "console",
                 transcript: Transcript | None = None, parent: ConsoleChannel | None = None,
                 liveness: Callable[[], None] | None = None, chunk_size: int = 48,
                 echo_timeout: float = 3.0, quiet_kernel: bool = True,
                 default_timeout: float = 300.0) -> None:
        self.stream = spawn if isinstance(spawn, ConsoleStream) else ConsoleStream(spawn, liveness)
        if liveness is not None:
            self.stream.liveness = liveness
        self.name = name
        self.transcript = transcript
        self.parent = parent
        self.default_timeout = default_timeout
        self.settings = _Settings(chunk_size=chunk_size, echo_timeout=echo_timeout, quiet_kernel=quiet_kernel)
        self.identity = make_marker(8)
        self.ready = False
        self._needs_resync = False
        #: what the console showed just before the last sync (for error messages)
        self.last_seen = ""

    @property
    def _prompts(self) -> _Prompts:
        return _Prompts(re.compile(self.settings.login_prompt), re.compile(self.settings.password_prompt))

    # ------------------------------------------------------------------ sending

    def send_raw(self, text: str) -> None:
        """Send text as it is (no chunking, no newline)."""
        self.stream.send(text)

    def send_line(self, line: str) -> None:
        """Send one line in chunks, at most ``chunks_in_flight`` of them not yet echoed.

        Xen's serial receive ring holds 128 bytes for dom0 (a guest console's input passes through
        it too): a chunk's echo proves that it has left every ring on the way, so the next one
        may follow while a bounded number is still travelling.
        """
        size, window = self.settings.chunk_size, self.settings.chunks_in_flight
        chunks = [line[offset:offset + size] for offset in range(0, len(line), size)]
        start = len(self.stream.buffer)
        for index, chunk in enumerate(chunks):
            if index >= window:
                start = self._await_echo(chunks[index - window], start)
            self.stream.send(chunk)
        self.stream.send("\n")

    def _await_echo(self, chunk: str, start: int) -> int:
        """Wait (briefly) until the tail of ``chunk`` is echoed after ``start``; return where it ends.

        The echo may be wrapped or redrawn by the shell's line editor: white space between its
        characters is ignored.  Without an echo in time (echo off?) the search start is kept.
        """
        needle = re.sub(r"\s", "", chunk)[-4:]
        if not needle:
            return start
        pattern = re.compile(r"\s*".join(re.escape(char) for char in needle))
        deadline = time.monotonic() + self.settings.echo_timeout
        while True:
            found = pattern.search(self.stream.buffer, max(0, start - 16))
            if found:
                return found.end()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return start
            self.stream.fill(min(0.2, remaining))

    # ------------------------------------------------------------------ sync and login

    def sync(self, timeout: float = 30.0, own_identity: bool = True, first: str = "") -> str:
        """Make sure a shell answers and nothing old is pending; return the answering identity.

        Echoes a fresh marker with the shell's identity token and waits for it.  The identity is
        ``""`` for a shell without the helpers, this channel's or a parent's token, or ``"?"``
        when noise made it unreadable three times.  With ``own_identity`` a reply from another
        shell (e.g. the guest still attached when dom0 is expected) raises :class:`ConsoleError`.
        ``first`` is a command run before the echo, joined with ``&&`` (no answer if it fails).
        """
        known = [""]
        channel: ConsoleChannel | None = self
        while channel is not None:
            known.append(channel.identity)
            channel = channel.parent
        deadline = time.monotonic() + timeout
        who = "?"
        for retry in range(3):
            marker = make_marker()
            pattern = re.compile(_tolerant(marker + ":") + r"(.*?)" + _tolerant(":I"), re.DOTALL)
            # take what is pending (for error messages); no need to wait for silence: only
            # this marker's answer can match
            self.last_seen = self.stream.drain(quiet=0.0, limit=0.1)
            answer = f"echo {_split_quoted(marker)}:${{__xq_id-}}:I"
            self.send_line(f"{first} && {answer}" if first and not retry else answer)
            m = self.stream.wait_for(pattern, deadline)
            if m is None:
                raise ConsoleTimeout(f"{self.name}: no shell answered within {timeout:.0f}s; last output:\n"
                                     + self._tail())
            region = m.group(1)
            # noise lines may sit inside the identity: accept the identity they were inserted into
            found = identify(region, known)
            if found is not None:
                who = found
                break
        # drop what arrived with the answer; the prompt that follows is dropped by the next
        # command's drain
        self.stream.buffer = ""
        if own_identity and self.ready and who != self.identity:
            raise ConsoleError(f"{self.name}: a different shell answered (identity {who or 'none'}, "
                               f"expected {self.identity}); is a nested console still attached?")
        self._needs_resync = False
        return who

    def resync(self, timeout: float = 30.0) -> None:
        """Recover after garbage or a timed-out command: interrupt it, then :meth:`sync`."""
        last: Exception | None = None
        end = time.monotonic() + timeout
        for attempt in range(4):
            self.stream.send(CTRL_C)
            time.sleep(0.2)
            self.stream.send("\n")
            try:
                self.sync(timeout=max(2.0, min(10.0 * (attempt + 1), end - time.monotonic())))
                return
            except ConsoleTimeout as err:
                last = err
            if time.monotonic() >= end:
                break
        raise ConsoleTimeout(f"{self.name}: could not resynchronise with the shell: {last}")

    def login(self, user: str = "root", password: str | None = None, timeout: float = 300.0,
              await_prompt: float = 0.0) -> None:
        """Reach a shell: answer a login prompt (and password prompt), or accept a shell prompt.

        With ``await_prompt`` the channel first waits up to that many seconds, sending nothing,
        for a login or shell prompt followed by a pause (a guest that is still booting would
        otherwise get probe lines typed into its console).  Then it installs the helper
        functions.  Raises :class:`LoginError` after repeated "Login incorrect" and
        :class:`ConsoleTimeout` when nothing usable answers in time.
        """
        deadline = time.monotonic() + timeout
        attempt = _LoginAttempt(user, password)
        if await_prompt > 0:
            self._await_prompt(min(deadline, time.monotonic() + await_prompt))
        elif not self._prompts.login.search(self._console_tail()):
            self.stream.send("\n")  # no prompt waiting (the boot phases leave the login prompt)
        while time.monotonic() < deadline:
            tail = self._read_until_prompt(deadline)
            if self._answer_prompt(tail, attempt):
                continue
            # A shell prompt is trusted as such on a top-level console, and on a nested one
            # (xl create -c) once this login answered its login prompt; before that it may be the
            # parent's prompt, shown when the command failed: a probe asks who answers.
            if SHELL_PROMPT.search(tail) and (self.parent is None or attempt.sent_user):
                self._install_helpers()  # their sync checks it is a shell
                return
            if self._probe_shell(attempt, deadline):
                return
        raise ConsoleTimeout(f"{self.name}: no login prompt or shell within {timeout:.0f}s; last output:\n"
                             + self._tail())

    def _await_prompt(self, wait_end: float) -> None:
        """Wait, typing nothing, for ``login:`` or a shell prompt followed by a second of quiet.

        (XEN) and kernel lines are not the console's own output: they neither show a prompt nor
        break a silence.  A console that stays silent for ``nudge_after`` seconds gets a bare
        newline (its prompt went out before anyone listened; getty or the shell prints it again).
        """
        meaningful = self._console_tail()
        last_output = time.monotonic()
        while time.monotonic() < wait_end:
            # "login:" counts at once (getty flushes its input before printing it)
            if self._prompts.login.search(meaningful):
                return
            if self.stream.fill(min(1.0, max(0.0, wait_end - time.monotonic()))):
                now = self._console_tail()
                if now != meaningful:
                    meaningful, last_output = now, time.monotonic()
                continue
            quiet_for = time.monotonic() - last_output
            if quiet_for >= 1.0 and ANY_PROMPT.search(meaningful):
                return
            if quiet_for >= self.settings.nudge_after:
                self.stream.send("\n")
                last_output = time.monotonic()

    def _console_tail(self) -> str:
        """The last 200 characters of the console's own output (noise lines removed).

        Only the end of the output matters, and the buffer grows with a guest's boot messages.
        """
        return NOISE_TAIL.sub("", NOISE_LINE.sub("", self.stream.buffer[-4096:]))[-200:]

    def _read_until_prompt(self, deadline: float) -> str:
        """Read until a prompt shows, or the console is quiet for a moment (at most 2 s)."""
        window_end = time.monotonic() + min(2.0, max(0.1, deadline - time.monotonic()))
        while not self._prompts.recognised(self._console_tail()) and time.monotonic() < window_end:
            if not self.stream.fill(0.5):
                break
        return self._console_tail()

    def _answer_prompt(self, tail: str, attempt: _LoginAttempt) -> bool:
        """Answer "Login incorrect", a login or a password prompt; False when ``tail`` shows none."""
        if "Login incorrect" in tail:
            # only a password we sent counts; a probe taken for a user name does not
            attempt.failures += 1 if attempt.sent_password else 0
            attempt.sent_password = False
            self.stream.buffer = ""
            if attempt.failures >= 3:
                raise LoginError(f"{self.name}: 'Login incorrect' {attempt.failures} times for user "
                                 f"{attempt.user!r}; check the password (password=...)")
            return True
        if self._prompts.login.search(tail):
            # getty flushes its input before printing the prompt, so the name can go now
            self.stream.buffer = ""
            self.send_line(attempt.user)
            attempt.sent_user = True
            return True
        if self._prompts.password.search(tail):
            self.stream.buffer = ""
            self.send_line(attempt.password or "")
            attempt.sent_password = True
            return True
        return False

    def _probe_shell(self, attempt: _LoginAttempt, deadline: float) -> bool:
        """Ask whatever answers for its identity; install the helpers if it is a new shell.

        False when nothing answered in time (the next probe waits twice as long, at most 30 s).
        """
        try:
            who = self.sync(timeout=min(attempt.probe, max(1.0, deadline - time.monotonic())), own_identity=False)
        except ConsoleTimeout:
            attempt.probe = min(attempt.probe * 2, 30.0)
            self.stream.send("\n")
            return False
        if self.parent is not None and self.parent.ready and who == self.parent.identity:
            raise ConsoleError(f"{self.name}: the console command returned to {self.parent.name}'s shell "
                               f"instead of reaching a new console; last output:\n{self.last_seen[-2000:]}")
        self._install_helpers()
        return True

    def adopt(self, identity: str, timeout: float = 60.0, first: str = "") -> None:
        """Take over a shell whose helpers were installed earlier with identity ``identity``.

        For a shell restored from a VM snapshot: it waits at its prompt with the helper
        functions and ``__xq_id`` of the channel that was talking to it when the snapshot was
        saved.  One :meth:`sync` re-establishes the channel (anything else answering raises
        :class:`ConsoleError`).  ``first`` is a command run in the same round trip: the shell
        only answers if it succeeds (a failure looks like no answer: :class:`ConsoleTimeout`).
        """
        self.identity = identity
        self.ready = True
        self.sync(timeout=timeout, first=first)

    def _install_helpers(self) -> None:
        # The user's extra lines first: the helper line ends with an assignment, so it can share
        # its round trip with the sync (``first`` is joined with ``&&``) and cannot fail it.
        for line in self.settings.extra_setup:
            self.send_line(line)
        self.ready = True
        self.sync(timeout=60.0, first=helper_script(self.identity, self.settings.quiet_kernel))

    # ------------------------------------------------------------------ commands

    def run(self, command: str, timeout: float | None = None, check: bool = False) -> CommandResult:
        """Run ``command`` in the shell; return its exit status and output (stderr merged).

        The command runs in the current shell (``cd`` persists) with stdin from /dev/null.  On
        timeout it raises :class:`ConsoleTimeout` and the next call first interrupts the command
        and resynchronises.  With ``check`` a non-zero status raises :class:`ConsoleError`.
        """
        if not self.ready:
            raise ConsoleError(f"{self.name}: not logged in; call login() first")
        if self._needs_resync:
            self.resync()
        timeout = self.default_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        marker = make_marker()
        quoted = _split_quoted(marker)
        # only this marker's lines can match, so pending output is taken without waiting for silence
        self.stream.drain(quiet=0.0, limit=0.1)
        self.send_line(f"__xq_run {quoted} {shlex.quote(command)}")
        try:
            result = self._collect(marker, quoted, command, deadline)
        except ConsoleTimeout as err:
            self._needs_resync = True
            duration = time.monotonic() - started
            if self.transcript:
                self.transcript.record(self.name, command, None, duration, err.partial, "timeout")
            raise
        except ConsoleError:
            self._needs_resync = True
            if self.transcript:
                self.transcript.record(self.name, command, None, time.monotonic() - started, "", "console error")
            raise
        result.duration = time.monotonic() - started
        if self.transcript:
            self.transcript.record(self.name, command, result.status, result.duration, result.output,
                                   "" if result.verified else "output not verified")
        if check and result.status != 0:
            raise ConsoleError(f"{self.name}: command failed with status {result.status}: {command}\n"
                               f"{result.output}")
        return result

    def _collect(self, marker: str, quoted: str, command: str, deadline: float) -> CommandResult:
        # The keyword comes before the marker: with "MARKER:E", a noise gap allowed between ':'
        # and 'E' let the begin line "MARKER:B" plus the next output lines, followed by a line
        # starting with 'E', pass for the end line (every copy alike, so the output could never
        # be read).  Before the marker, the gap would have to end at a line start holding the
        # rest of the secret marker, which only the real line has.
        begin_re = re.compile(_tolerant("B:" + marker + "\n"))
        end_re = re.compile(_tolerant("E:" + marker + ":"))
        field_re = re.compile(r"(\d+):([0-9a-f]{0,32}):(\d+)\n")
        copies: list[str] = []
        for attempt in range(10):
            end = self.stream.wait_for(end_re, deadline)
            if end is None:
                partial = self.stream.buffer
                raise ConsoleTimeout(
                    f"{self.name}: command did not finish within the timeout: {command}\n"
                    f"last output:\n{self._tail()}", command=command, partial=partial)
            consumed = end.string[:end.start()]
            # the fields line: wait for its end, it may still be arriving
            fields = None
            line_deadline = min(deadline, time.monotonic() + 10.0)
            while fields is None:
                fields = field_re.match(self.stream.buffer)
                if fields is None:
                    if "\n" in self.stream.buffer or time.monotonic() > line_deadline:
                        break
                    self.stream.fill(0.2)
            begin = None
            for begin in begin_re.finditer(consumed):
                pass  # keep the last begin line before the end marker
            if fields is not None:
                self.stream.buffer = self.stream.buffer[fields.end():]
            if fields is not None and begin is not None and fields.group(1) == fields.group(3):
                status = int(fields.group(1))
                digest = fields.group(2)
                raw = consumed[begin.end():]
                raw = raw.removesuffix("\n")  # the newline __xq_show adds
                copies.append(raw)
                for candidate in _candidates(copies):
                    if digest and hashlib.md5(candidate.encode("utf-8", "surrogateescape")).hexdigest() == digest:
                        return CommandResult(status, candidate, command)
                if not digest and NOISE_LINE.sub("", raw) == raw:
                    return CommandResult(status, raw, command, verified=False)
                # The md5 cannot match when cleaning changed the output (CR, escape sequences):
                # accept two identical copies (noise differs between copies, output does not).
                cleaned = [NOISE_LINE.sub("", c) for c in copies]
                if cleaned[-1] in cleaned[:-1]:
                    return CommandResult(status, cleaned[-1], command, verified=False)
            # noise broke something: show the saved output again (the command is not re-run)
            self.stream.drain(quiet=0.1, limit=0.5)
            self.send_line(f"__xq_show {quoted}")
        raise ConsoleError(f"{self.name}: could not read a clean copy of the output of: {command}")

    def start(self, command: str) -> None:
        """Send ``command`` to the shell without waiting for it (it may take over the console)."""
        if self._needs_resync:
            self.resync()
        self.stream.drain(quiet=0.05, limit=0.3)
        self.send_line(command)
        if self.transcript:
            self.transcript.record(self.name, command, None, 0.0, "", "started")

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """Wait for a regular expression in the (cleaned) console output; consume through it."""
        m = self.stream.wait_for(re.compile(pattern), time.monotonic() + timeout)
        if m is None:
            raise ConsoleTimeout(f"{self.name}: {pattern!r} did not appear within {timeout:.0f}s; last output:\n"
                                 + self._tail())
        return m

    # ------------------------------------------------------------------ nesting

    def nested(self, name: str) -> ConsoleChannel:
        """A channel for a console reached from this shell (same stream), e.g. ``xl console``."""
        return ConsoleChannel(self.stream, name=name, transcript=self.transcript, parent=self,
                              chunk_size=self.settings.chunk_size, echo_timeout=self.settings.echo_timeout,
                              quiet_kernel=False, default_timeout=self.default_timeout)

    def detach(self, timeout: float = 60.0) -> ConsoleChannel:
        """Leave a nested console with Ctrl-] sent on its own; wait for the parent shell.

        Returns the parent channel.  Raises :class:`ConsoleError` if this channel is not nested or
        the parent shell does not answer.
        """
        if self.parent is None:
            raise ConsoleError(f"{self.name}: not a nested console, nothing to detach from")
        end = time.monotonic() + timeout
        last: Exception | None = None
        for _ in range(3):
            time.sleep(0.5)  # Ctrl-] must arrive alone, not glued to earlier input
            self.stream.send(CTRL_RIGHT_BRACKET)
            time.sleep(0.5)
            try:
                self.parent.sync(timeout=max(5.0, min(30.0, end - time.monotonic())))
                self.ready = False
                if self.transcript:
                    self.transcript.record(self.name, "<Ctrl-]>", 0, 0.0, "", "detached")
                return self.parent
            except ConsoleError as err:
                last = err
            if time.monotonic() >= end:
                break
        raise ConsoleError(f"{self.name}: detach with Ctrl-] did not return to {self.parent.name}: {last}")

    # ------------------------------------------------------------------ helpers

    def _tail(self, lines: int = 30) -> str:
        text = self.stream.buffer
        return "\n".join(text.splitlines()[-lines:])
