"""Node, Source and Sink base classes with declarative ports and parameters.

A node declares its ports and parameters as class attributes::

    class Correlation(Node):
        '''Cross-correlation of two channels.'''
        inp = In(TagBatch)              # input port named 'inp'... see below
        out = Out(Histogram)
        channel_1 = Param(int, default=0, doc="start channel")
        binwidth_ps = Param(int, default=1000, min=1, unit="ps")

Input ports are named by their attribute name. The conventional single input
is ``tags = In(TagBatch)`` or any name; the conventional single output is
``out``. Parameters are validated when the node is constructed
(``Correlation(binwidth_ps=0)`` raises :class:`ParamError` naming the
parameter, its range and unit); they are readable as attributes and as
``node.params``.

Lifecycle, driven by an executor (or :func:`engine.testing.run_node`)::

    describe() -> {port: Descriptor}   # what each output will carry
    check()                            # before acquisition: refuse bad set-ups (paths...)
    reset()                            # fresh state
    warmup()                           # compile kernels on a tiny batch (no outputs)
    process(msg, port) -> iterable     # yield Message (single output) or (port, Message)
    finish() -> iterable               # end of stream: flush the last snapshot
    close()                            # always called, even after errors

A :class:`Source` instead implements ``generate()`` yielding messages, and
must return promptly once ``self.stop_requested`` is true.

Cancellation: a node busy in a long computation (a CNN batch, an MLE sweep)
calls ``self.stop_requested()`` between chunks; it turns true once the run is
being stopped (Ctrl-C, SIGTERM, a failed step, ``stop_event``), and the node
should then return what it has. ``finish()`` and ``close()`` still follow.
Every executor and :func:`engine.testing.run_node` provide it (one driver:
:mod:`engine.executors.driver`).

Attributes the engine reads (declared on :class:`Node`, set in ``__init__``):
``counters`` (dict of numbers shown in run statistics), ``exit_status`` (a
source that ended early for its own reason sets ``'abort'``/``'fail'``),
``graph_info`` (set by the executor before ``reset()``: graph name, ref,
params, file text) and the class attribute ``owns_terminal`` (the node draws
on the terminal itself, e.g. a live view).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator

from .messages import SUCCESS, Descriptor, Message


class ParamError(ValueError):
    """A node parameter is missing, unknown or out of range."""


class _Missing:
    def __repr__(self):
        return "<required>"


REQUIRED = _Missing()


class Param:
    """A validated node parameter (like qudi's ``ConfigOption``).

    ``kind`` is a type or tuple of types (``int`` accepts numpy integers,
    ``float`` accepts ints); ``choices`` restricts values; ``min``/``max``
    bound numbers (inclusive); ``optional=True`` also accepts ``None``;
    ``check`` is an extra callable returning an error string or None.
    """

    def __init__(self, kind=object, default=REQUIRED, *, min=None, max=None, unit: str = "",
                 doc: str = "", choices=None, optional: bool = False, check=None):
        self.kind = kind
        self.default = default
        self.min = min
        self.max = max
        self.unit = unit
        self.doc = doc
        self.choices = tuple(choices) if choices is not None else None
        self.optional = optional
        self.extra_check = check
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name

    def validate(self, owner: str, value):
        import numpy as np

        where = f"{owner} parameter '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{where} must not be None")
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        numeric = int in kinds or float in kinds
        if isinstance(value, (bool, np.bool_)) and bool not in kinds and numeric:
            raise ParamError(f"{where} expects a number; got bool {value!r}")
        if isinstance(value, np.integer) and int in kinds:
            value = int(value)
        elif (float in kinds and isinstance(value, (int, np.integer, np.floating))
              and not (int in kinds and isinstance(value, int))):
            value = float(value)
        if tuple in kinds and isinstance(value, list):
            value = tuple(value)
        if object not in kinds and not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ParamError(f"{where} expects {names}; got {type(value).__name__} {value!r}")
        if isinstance(value, float) and value != value:
            raise ParamError(f"{where} must not be NaN")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"{where} must be one of {', '.join(map(repr, self.choices))}; got {value!r}")
        unit = f" {self.unit}" if self.unit else ""
        if self.min is not None and value < self.min:
            raise ParamError(f"{where} must be >= {self.min}{unit}; got {value!r}")
        if self.max is not None and value > self.max:
            raise ParamError(f"{where} must be <= {self.max}{unit}; got {value!r}")
        if self.extra_check is not None:
            msg = self.extra_check(value)
            if msg:
                raise ParamError(f"{where}: {msg}")
        return value

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__["_params"][self.name]


class Port:
    def __init__(self, msg_type: type, doc: str = "", optional: bool = False):
        self.msg_type = msg_type
        self.doc = doc
        self.optional = optional
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        return self


class In(Port):
    """An input port accepting messages of ``msg_type`` (or a subclass).

    ``msg_type`` may be a tuple of accepted types. ``optional=True`` ports
    may stay unconnected.
    """

    def accepts(self, t: type) -> bool:
        types = self.msg_type if isinstance(self.msg_type, tuple) else (self.msg_type,)
        return any(issubclass(t, x) for x in types)

    def type_names(self) -> str:
        types = self.msg_type if isinstance(self.msg_type, tuple) else (self.msg_type,)
        return " or ".join(t.__name__ for t in types)


class Out(Port):
    """An output port producing messages of ``msg_type``."""


class NodeMeta(type):
    def __new__(mcls, name, bases, ns):
        cls = super().__new__(mcls, name, bases, ns)
        params, ins, outs = {}, {}, {}
        for klass in reversed(cls.__mro__):
            for k, v in vars(klass).items():
                if isinstance(v, Param):
                    params[k] = v
                elif isinstance(v, In):
                    ins[k] = v
                elif isinstance(v, Out):
                    outs[k] = v
        cls._param_specs = params
        cls._inputs = ins
        cls._outputs = outs
        return cls


class StopFlag:
    """``node.stop_requested``: true once the step should stop.

    Call it (``self.stop_requested()``) or test it (``if self.stop_requested:``);
    both read the same state. The executor's driver may attach a poll function
    that looks for a stop order (e.g. on the worker's control socket), so a
    node busy in one long ``process()`` call still learns of Ctrl-C.
    """

    __slots__ = ("_node",)

    def __init__(self, node: "Node"):
        self._node = node

    def __call__(self) -> bool:
        d = self._node.__dict__
        if d.get("_stop"):
            return True
        poll = d.get("_stop_poll")
        if poll is not None and poll():
            d["_stop"] = True
            return True
        return False

    __bool__ = __call__

    def __repr__(self):
        return f"<stop_requested {self()}>"


class Node(metaclass=NodeMeta):
    """Base class of every processing step. See the module docstring.

    Call ``self.stop_requested()`` between chunks of a long computation and
    return early when it is true (the run is being stopped).
    """

    _param_specs: dict[str, Param]
    _inputs: dict[str, In]
    _outputs: dict[str, Out]

    #: the node draws on the terminal itself (a live view): the processes
    #: executor does not pipe its output and shows no table of its own
    owns_terminal: ClassVar[bool] = False
    #: numbers shown in the run statistics (``node.<key>``); nodes fill it
    counters: dict[str, Any]
    #: 'success', or 'abort'/'fail' when a source ended early for its own reason
    exit_status: str
    #: {name, ref, params, source_text} of the running graph, set before ``reset()``
    graph_info: dict[str, Any]
    #: how this step's input streams ended, set just before ``finish()``: 'success' (the
    #: sources ended by themselves), 'abort' (the run was stopped: Ctrl-C, SIGTERM, a
    #: duration limit) or 'fail' (a step failed); None before. Sinks record it.
    stream_status: str | None

    def __init__(self, **params):
        owner = type(self).__name__
        unknown = sorted(set(params) - set(self._param_specs))
        if unknown:
            import difflib

            hints = []
            for u in unknown:
                close = difflib.get_close_matches(u, self._param_specs, n=1)
                hints.append(f"'{u}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            known = ", ".join(self._param_specs) or "none"
            raise ParamError(f"{owner}: unknown parameter {', '.join(hints)}; known parameters: {known}")
        values = {}
        for name, spec in self._param_specs.items():
            if name in params:
                values[name] = spec.validate(owner, params[name])
            elif spec.default is REQUIRED:
                raise ParamError(f"{owner} parameter '{name}' is required"
                                 + (f" ({spec.doc})" if spec.doc else ""))
            else:
                values[name] = spec.default
        self.__dict__["_params"] = values
        self.__dict__.setdefault("counters", {})
        self.__dict__.setdefault("exit_status", SUCCESS)
        self.__dict__.setdefault("graph_info", {})
        self.__dict__.setdefault("stream_status", None)
        self.step_id = owner  # replaced by the graph with 'graph.step'
        self.validate_params()

    # -- declarations -------------------------------------------------------
    @classmethod
    def inputs(cls) -> dict[str, In]:
        return dict(cls._inputs)

    @classmethod
    def outputs(cls) -> dict[str, Out]:
        return dict(cls._outputs)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.__dict__["_params"])

    def validate_params(self) -> None:
        """Cross-parameter checks; raise :class:`ParamError`. Override as needed."""

    def param_error(self, name: str, msg: str) -> ParamError:
        return ParamError(f"{type(self).__name__} parameter '{name}' {msg}")

    def set_param(self, name: str, value) -> None:
        """Change one parameter after construction (validated), e.g. a run option such as
        ``overwrite`` that ``antibunch run --overwrite`` sets on every node declaring it."""
        spec = self._param_specs.get(name)
        if spec is None:
            raise self.param_error(name, "does not exist")
        self.__dict__["_params"][name] = spec.validate(type(self).__name__, value)
        self.validate_params()

    # -- stopping -------------------------------------------------------------
    @property
    def stop_requested(self) -> StopFlag:
        """True once the run is being stopped; call it between chunks of long work."""
        return StopFlag(self)

    @stop_requested.setter
    def stop_requested(self, value) -> None:
        self.__dict__["_stop"] = bool(value)

    def request_stop(self) -> None:
        """Ask this step to stop (the executor calls it; a source ends its stream)."""
        self.__dict__["_stop"] = True

    def set_stop_poll(self, poll: Callable[[], bool] | None) -> None:
        """Executor hook: ``poll()`` returns True when a stop order has arrived."""
        self.__dict__["_stop_poll"] = poll

    # -- lifecycle ------------------------------------------------------------
    def describe(self) -> dict[str, Descriptor]:
        return {name: Descriptor(type_id=port.msg_type.TYPE_ID, node=type(self).__name__,
                                 params=plain(self.params))
                for name, port in self._outputs.items()}

    def check(self) -> None:
        """Refuse a bad set-up before acquisition starts (e.g. unwritable path)."""

    def reset(self) -> None:
        """Start from a fresh state."""

    def on_descriptor(self, port: str, desc: Descriptor) -> None:
        """Called with the Descriptor that precedes data on input ``port``.

        ``desc.params`` are the producing node's parameters, ``desc.port`` its
        full id. Executors also set ``self.graph_info`` ({name, ref, params,
        source_text}) on every node before ``reset()``.
        """

    def warmup(self) -> None:
        """Compile numba kernels on a tiny input; must not change state.

        Prefer :meth:`warm_on` (warm-up by example): it compiles exactly what this
        configuration of the node runs, with the array types the executors deliver."""

    def warm_on(self, messages, port: str | None = None, **smaller) -> None:
        """Warm-up by example: a throw-away copy of this node (same parameters, except the
        ``smaller`` ones -- sizes that do not change any array type, e.g. ``n_bins``, so that
        the copy stays small) processes ``messages`` on input ``port`` (default: the first
        input) and finishes.

        Arrays are made read-only first, as every executor delivers them: numba compiles a
        separate machine-code specialisation for read-only arrays, so kernels warmed up on
        writable arrays would compile again on the first real message. Only the kernels the
        node's code path calls for these parameters are compiled (or loaded from numba's
        on-disk cache) -- not every kernel of its module. ``self`` is not touched."""
        port = port or next(iter(self.inputs()), None)
        twin = type(self)(**{**self.params, **smaller})
        twin.graph_info = dict(self.graph_info)
        twin.step_id = f"{self.step_id} (warm-up)"
        twin.reset()
        try:
            for msg in messages:
                for a in msg.array_fields().values():
                    a.flags.writeable = False
                for _ in iter_outputs(twin, twin.process(msg, port)):
                    pass
            for _ in iter_outputs(twin, twin.finish()):
                pass
        finally:
            twin.close()

    def process(self, msg: Message, port: str) -> Iterable | None:
        raise NotImplementedError(f"{type(self).__name__}.process")

    def finish(self) -> Iterable | None:
        """End of stream: yield the final snapshot(s)."""
        return ()

    def close(self) -> None:
        """Release resources; always called."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class Source(Node):
    """A node without inputs that generates messages.

    Implement :meth:`generate`; check ``self.stop_requested`` between batches
    and return promptly when it is true (the duration is reached, Ctrl-C, a
    failed step; the executor then sends ``Stop(abort)``). Set
    ``self.exit_status`` to 'abort' if you stopped early for another reason.
    """

    def generate(self) -> Iterator:
        raise NotImplementedError(f"{type(self).__name__}.generate")

    def process(self, msg, port):  # pragma: no cover - sources have no inputs
        raise RuntimeError("a Source has no inputs")


class Sink(Node):
    """A node without outputs (files, displays)."""


def plain(obj):
    """Parameters as msgpack/JSON-able plain data (descriptors, HDF5 attributes, summaries)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"<array {obj.dtype} {obj.shape}>"
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    return repr(obj)


def iter_outputs(node: Node, produced):
    """Normalise what ``process``/``finish``/``generate`` yield into ``(port, msg)`` pairs, lazily."""
    if produced is None:
        return
    outs = node._outputs
    for item in produced:
        if isinstance(item, tuple):
            port, msg = item
            if port not in outs:
                raise RuntimeError(f"step '{node.step_id}' emitted on unknown output '{port}'; "
                                   f"outputs: {', '.join(outs) or 'none'}")
        else:
            msg = item
            if len(outs) != 1:
                raise RuntimeError(f"step '{node.step_id}' has {len(outs)} outputs; "
                                   f"yield (port, message) pairs")
            port = next(iter(outs))
        yield port, msg
