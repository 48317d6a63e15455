"""The ``graphc`` command: dump or profile a graph defined in the user's module or script; see or clear the cache.

    graphc dump model.py:train_step --stage kernels -o step.svg
    graphc dump --example mnist-mlp --stage forward
    graphc profile --example mnist-mlp --dim batch=128
    graphc profile --example mnist-convnet
    graphc cache info
"""
import argparse
import functools
import importlib
import importlib.util
import inspect
import os
import sys

import numpy as np

from runtime import cache
from runtime.atomic import atomic_write_bytes

from .graph.shapes import evaluate_shape
from .viz import STAGES, DumpError, dump_text, machine_code, profile, render, to_dot
from .viz.dot import PICTURE_FORMATS
from .viz.examples import EXAMPLES
from .viz.networkx_graph import as_graph

TEXT_FORMATS = ("txt", "dot", "llvm", "asm")
SUFFIX_FORMATS = {"gv": "dot", "ll": "llvm", "s": "asm", "text": "txt"}
DEFAULT_DIM = 32

TARGET_HELP = """TARGET is MODULE:ATTRIBUTE or path/to/script.py:ATTRIBUTE (dots reach deeper, as in
module:model.step). The attribute is a tensor, a list of tensors, a gc.Graph, a compiled gc.Function,
a Keras-style model (its graphc_function() method or train_function attribute is used), or a
zero-argument callable returning one of these."""


# What a Keras-style model whose ``built`` or ``compiled`` is False needs before it has a training step.
MODEL_READY = {"built": "give it an input shape (keras.Input(shape) as its first layer)",
               "compiled": "compile it (model.compile(optimizer=..., loss=...))"}


class TargetError(Exception):
    """The TARGET names nothing graphc can dump: reported in one line, exit status 2."""


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "cache":
        return run_cache(args.action)
    if (args.target is None) == (args.example is None):
        parser.error(f"{args.command}: give either TARGET or --example NAME")
    try:
        # Usage errors come first, before a target is loaded and compiled.
        if args.command == "dump":
            args.format = dump_format(parser, args)
        else:
            args.sizes = parse_dims(parser, args.dim)
            args.output_format = output_format(parser, args.output) if args.output else None
        obj = EXAMPLES[args.example]() if args.example else load_target(args.target)
        return args.handler(parser, args, obj)
    except TargetError as error:
        print(f"graphc: error: {error}", file=sys.stderr)
        return 2
    except DumpError as error:
        print(f"graphc: error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: look at the graphs your code builds, stage by stage.",
        epilog="Run 'graphc dump --help', 'graphc profile --help' or 'graphc cache --help' for details.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dump = commands.add_parser(
        "dump", help="write a graph as a picture, DOT, text, LLVM IR or assembly",
        description="Write one stage of a graph as svg/png/pdf (needs Graphviz's dot), DOT text, a text "
                    "listing (one node a line, with its role), or the program's LLVM IR / per-kernel assembly (native "
                    "backend only). Stages: forward (what the outputs need), autodiff (+ gradients and "
                    "updates), optimized (after the graph passes), kernels (grouped into kernels).",
        epilog=TARGET_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target_arguments(dump)
    dump.add_argument("--stage", choices=STAGES, default="autodiff", help="which stage (default: autodiff)")
    dump.add_argument("--format", choices=PICTURE_FORMATS + TEXT_FORMATS,
                      help="output format (default: from -o's suffix, else txt)")
    dump.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout; pictures need -o)")
    dump.set_defaults(handler=run_dump)
    timing = commands.add_parser(
        "profile", help="time every kernel of a compiled function",
        description="Run the function on random inputs and print a table: per kernel its mean time per call "
                    "(each kernel called alone on 1 thread, in schedule order), its share of the kernels' "
                    "total and, for matmuls, GFLOP/s (2*M*N*K flops); then the whole program's time per call "
                    "on the function's threads. A function compiled with backend='reference' is timed node "
                    "by node instead (numpy). Variables end as they started.",
        epilog=TARGET_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target_arguments(timing)
    timing.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                        help=f"size of a symbolic dimension, e.g. batch=128 (default {DEFAULT_DIM}); repeatable")
    timing.add_argument("--repeats", type=positive_int, default=20, help="runs to average over (default: 20)")
    timing.add_argument("-o", "--output", metavar="FILE",
                        help="also write the kernel graph coloured by time share (.svg, .png, .pdf or .dot)")
    timing.set_defaults(handler=run_profile)
    caching = commands.add_parser(
        "cache", help="show or clear the compiled-object cache",
        description="info: the cache directory (GRAPHC_CACHE_DIR), its entries and their size, the bound "
                    "(GRAPHC_CACHE_MAX_BYTES) and whether the cache is usable, or why not. clear: remove the "
                    "entries (and temporaries that killed writers left); other files there are kept.")
    caching.add_argument("action", choices=("info", "clear"))
    return parser


def positive_int(text) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _add_target_arguments(parser):
    parser.add_argument("target", nargs="?", metavar="TARGET", help="what to load: MODULE:ATTR or FILE.py:ATTR")
    parser.add_argument("--example", choices=sorted(EXAMPLES),
                        help="a built-in graph instead of TARGET (mnist-mlp: the seed MLP's training step; "
                             "mnist-convnet: the book's convnet's)")


def dump_format(parser, args) -> str:
    format = args.format or (output_format(parser, args.output) if args.output else "txt")
    if format in PICTURE_FORMATS and not args.output:
        parser.error(f"dump: --format {format} writes a picture: give -o FILE")
    return format


def run_dump(parser, args, obj) -> int:
    format = args.format
    if format in PICTURE_FORMATS:
        render(obj, args.output, stage=args.stage, format=format)
        return 0
    if format == "dot":
        text = to_dot(obj, args.stage)
    elif format == "txt":
        text = dump_text(obj, args.stage)
    else:
        text = machine_code(obj, format)
    emit(text, args.output)
    return 0


def run_profile(parser, args, obj) -> int:
    function = as_function(obj)
    known = {s.name for p in function.graph.inputs for dim in p.shape if not isinstance(dim, int)
             for s in dim.free_symbols}
    unknown = sorted(set(args.sizes) - known)
    if unknown:  # a misspelt name would silently leave the dim at its default
        parser.error(f"--dim {', '.join(unknown)}: no such symbolic dimension in the inputs of "
                     f"{args.target or args.example}; they have {', '.join(sorted(known)) or 'none'}")
    result = profile(function, random_feeds(function, args.sizes), args.repeats)
    print(result.table(), end="")
    if args.output_format == "dot":
        atomic_write_bytes(args.output, result.to_dot().encode())
    elif args.output_format:
        render(function, args.output, stage="kernels", format=args.output_format, heat=result.heat())
    return 0


def run_cache(action: str) -> int:
    """``graphc cache info`` or ``graphc cache clear``; a filesystem error is one line, exit status 2."""
    try:
        if action == "clear":
            count, size = cache.clear()
            print(f"removed {count} entries ({mebibytes(size)}) from {cache.cache_dir()}")
            return 0
        facts = cache.info()
    except OSError as error:
        print(f"graphc: error: cache {action}: {error}", file=sys.stderr)
        return 2
    print(f"directory  {facts['directory']}\n"
          f"entries    {facts['entries']} ({mebibytes(facts['bytes'])}, {facts['bytes']} bytes)\n"
          f"bound      {mebibytes(facts['max_bytes'])} ({facts['max_bytes']} bytes, GRAPHC_CACHE_MAX_BYTES)\n"
          f"key        {facts['key']}\n"
          f"usable     {'yes' if facts['problem'] is None else 'no: ' + facts['problem']}")
    return 0


def mebibytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def output_format(parser, path) -> str:
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    format = SUFFIX_FORMATS.get(suffix, suffix)
    if format not in PICTURE_FORMATS + TEXT_FORMATS:
        parser.error(f"cannot tell the format from {path!r}: use a suffix among "
                     f".{', .'.join(PICTURE_FORMATS + TEXT_FORMATS)} or pass --format")
    return format


def emit(text: str, path):
    if path:
        atomic_write_bytes(path, text.encode())
    else:
        sys.stdout.write(text)


# ---- loading TARGET ------------------------------------------------------------------------
def load_target(spec: str):
    """The dumpable object ``spec`` (``module:attr`` or ``file.py:attr``) names; TargetError if there is none."""
    location, separator, attribute = spec.rpartition(":")
    if not separator or not location or not attribute:
        raise TargetError(f"TARGET must be MODULE:ATTRIBUTE or path/to/script.py:ATTRIBUTE, got {spec!r}")
    module = load_script(location) if location.endswith(".py") else import_module(location)
    try:
        obj = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise TargetError(f"{location} has no attribute {attribute!r}") from None
    return dumpable(obj, spec)


def import_module(name: str):
    # A console script's sys.path starts at its own bin directory: modules in the current one must be found too.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise TargetError(f"no module named {name!r} (looked in the current directory and sys.path)") from None
        raise  # a module the user's code imports is missing: their traceback says where


def load_script(path: str):
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    name = "_graphc_target_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # so the script's sibling modules import
    spec.loader.exec_module(module)
    return module


def dumpable(obj, spec: str, called: bool = False):
    """``obj`` if graphc can dump it, else what its Keras hook or (once) calling it gives; TargetError otherwise."""
    try:
        as_graph(obj)
        return obj
    except DumpError:
        pass
    is_model = not inspect.isclass(obj)  # the hooks are methods of a model instance, not of its class
    hook = getattr(obj, "graphc_function", None)
    if is_model and callable(hook):
        unready = [state for state in ("built", "compiled") if getattr(obj, state, True) is False]
        if unready:
            raise TargetError(f"{spec} is a model that is not {' and not '.join(unready)}, so it has no training "
                              f"step yet: {' and '.join(MODEL_READY[state] for state in unready)} first")
        try:
            step = hook()
        except ValueError as error:  # the model says why it has no step (a compile() without a loss)
            raise TargetError(f"{spec}.graphc_function(): {error}") from None
        return dumpable(step, f"{spec}.graphc_function()", called=True)
    if is_model and hasattr(obj, "train_function"):
        if obj.train_function is None:
            raise TargetError(f"{spec}.train_function is None: compile the model (and build its train step) first")
        return dumpable(obj.train_function, f"{spec}.train_function", called=True)
    if callable(obj) and not called:
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise TargetError(f"{spec} is a callable that needs arguments; graphc calls it with none") from None
        except ValueError:
            pass  # no signature to inspect (a builtin): just try the call
        return dumpable(obj(), f"{spec}()", called=True)
    raise TargetError(f"{spec} is a {type(obj).__name__}: expected a tensor, a list of tensors, a gc.Graph, "
                      f"a gc.Function, a model with graphc_function()/train_function, or a callable returning one")


# ---- profile inputs ------------------------------------------------------------------------
def as_function(obj):
    from .function import function
    graph, compiled = as_graph(obj)
    return compiled if compiled is not None else function(graph.inputs, graph.outputs, graph.updates)


def parse_dims(parser, specs) -> dict:
    sizes = {}
    for spec in specs:
        name, _, size = spec.partition("=")
        if not name or not size.isdigit() or int(size) < 1:
            parser.error(f"--dim takes NAME=SIZE with SIZE a positive integer, got {spec!r}")
        sizes[name] = int(size)
    return sizes


def random_feeds(function, sizes: dict) -> list:
    """One random array per input: symbolic dims sized by ``sizes`` (by name) or DEFAULT_DIM."""
    rng = np.random.default_rng(0)
    feeds = []
    for placeholder in function.optimized_graph.inputs:  # None dims that met: one symbol or a size
        symbols = {s for dim in placeholder.shape if not isinstance(dim, int) for s in dim.free_symbols}
        shape = evaluate_shape(placeholder.shape, {s: sizes.get(s.name, DEFAULT_DIM) for s in symbols})
        feeds.append(rng.standard_normal(shape).astype(placeholder.dtype))
    return feeds


if __name__ == "__main__":
    sys.exit(main())
