"""Benchmark cases: a model, its weights contract, its preprocessing and its accuracy target.

Each module ``<name>.py`` in this package defines one ``Case`` subclass named ``<name>`` and
exposes an instance as ``CASE``; ``discover()`` finds them by scanning the package (the
convention of ``discovery.py``, shared with vendors, toolkits and launchers).
"""

import inspect
import os
import sys
from typing import Dict, NamedTuple, Optional, Tuple

import torch

from ..contract import CASES, HASH_IN_NAME, expected_weights, reference_weights, weights_refusal
from ..data.preprocess import Preprocessing
from ..discovery import discover as discover_plugins
from ..hashing import sha256_file as sha256_of

RANDOM_SEED = 0


class WeightsError(ValueError):
    """The weights given cannot be used; the message names the file."""


class Weights(NamedTuple):
    """Where the model's weights come from and what is known about them."""

    spec: str  # "random", "package" or "file"
    path: Optional[str]
    sha256: Optional[str]
    name_sha256_prefix: Optional[str]  # the hex digits in the file name, if any
    verified: bool  # a file whose sha256 was checked (every file is: contract.weights_refusal)
    reference: Optional[str]  # the case's label for these weights, when they are its reference weights
    seed: Optional[int]  # torch.manual_seed used for random initialisation


def load_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """A state dict from ``path`` on the CPU (tensors only, where this torch can enforce it)."""
    if "weights_only" in inspect.signature(torch.load).parameters:
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu")


class Case:
    """Base case. Subclasses set the class attributes and ``architecture()``; the reference weights of each
    case (recognised by sha256) are contract.REFERENCE_WEIGHTS."""

    name = ""
    preprocessing = Preprocessing()
    #: precision -> minimum top-1 (%) of the infer stage, for the reference weights on the full set
    targets: Dict[str, float] = {}
    #: number of images the target is defined on (the full evaluation set)
    gate_images = 50000

    def architecture(self) -> torch.nn.Module:
        """The model with freshly initialised parameters."""
        raise NotImplementedError

    def package_weights(self) -> Optional[str]:
        """Path of weights shipped inside an installed package (``--weights package``), if any."""
        return None

    # -- weights ------------------------------------------------------------------
    def resolve_weights(self, spec: str, declared_sha256: Optional[str] = None) -> Weights:
        """Check ``spec`` ("random", "package" or a file path) by content: its sha256
        (contract.weights_refusal, against ``declared_sha256`` where given) and that it is a state dict of
        this case's model; raise WeightsError in one line naming the expected file if unusable."""
        if spec == "random":
            return Weights("random", None, None, None, False, None, RANDOM_SEED)
        kind = "file"
        path = spec
        if spec == "package":
            kind = "package"
            try:
                path = self.package_weights()
            except ImportError as exc:
                raise WeightsError(f"package: weights package not importable: {exc}") from exc
            if path is None:
                raise WeightsError(f"package: case {self.name} ships no package weights")
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: no such file")
        sha = sha256_of(path)
        refused = weights_refusal(self.name, path, sha, declared_sha256)
        if refused is not None:
            raise WeightsError(refused)
        self.check_state_dict(path)
        match = HASH_IN_NAME.search(os.path.basename(path))
        prefix = match.group(1) if match else None
        reference = reference_weights(self.name, sha)
        return Weights(kind, os.path.abspath(path), sha, prefix, True, reference, None)

    def check_state_dict(self, path: str) -> None:
        """WeightsError unless ``path`` holds a state dict of this case's model: tensors only (loaded with
        weights_only where torch has it), every key of the model with its shape, and no other key."""
        expected = f"expected a state dict of case {self.name}, e.g. {expected_weights(self.name)}"
        try:
            state = load_state_dict(path)
        except Exception as exc:  # torch raises anything from a file that is not its own
            raise WeightsError(f"{path}: not a state dict ({_load_failure(exc)}); {expected}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(
                f"{path}: holds a {type(state).__name__}, not a state dict of tensors; {expected}"
            )
        own = self.architecture().state_dict()
        differ = [
            ("missing", sorted(set(own) - set(state))),
            ("unexpected", sorted(set(state) - set(own))),
            ("of another shape", sorted(k for k in own if k in state and state[k].shape != own[k].shape)),
        ]
        found = ["%d keys %s (%s, ...)" % (len(keys), what, keys[0]) for what, keys in differ if keys]
        if found:
            raise WeightsError(f"{path}: a state dict of another model ({'; '.join(found)}); {expected}")

    def build(self, weights: Weights) -> torch.nn.Module:
        """The eval-mode fp32 model on the CPU with ``weights`` loaded (or seeded random init)."""
        torch.manual_seed(weights.seed if weights.seed is not None else RANDOM_SEED)
        model = self.architecture()
        if weights.path is not None:
            model.load_state_dict(load_state_dict(weights.path), strict=True)
        return model.float().eval()

    # -- accuracy rules -----------------------------------------------------------
    def meaningful_accuracy(self, weights: Weights) -> Tuple[bool, str]:
        """Whether accuracy measured with ``weights`` means anything, and why."""
        if weights.spec == "random":
            return False, f"random weights (torch.manual_seed({weights.seed})): accuracy is not meaningful"
        return True, f"weights verified: sha256 {weights.sha256}"

    def accuracy_gate(self, weights: Weights, precision: str, n_images: int, top1_pct: float) -> Dict:
        """The gate verdict for the infer stage's exact top-1 percentage."""
        target = self.targets.get(precision)
        verdict = {"target_top1_pct": target, "passed": None, "reason": ""}
        meaningful, why = self.meaningful_accuracy(weights)
        if target is None:
            verdict["reason"] = f"case {self.name} declares no accuracy target for {precision}"
        elif not meaningful:
            verdict["reason"] = why
        elif weights.reference is None:
            verdict["reason"] = (
                f"the target belongs to the reference weights {expected_weights(self.name)}, not to these"
            )
        elif n_images != self.gate_images:
            verdict["reason"] = (
                f"{n_images} images evaluated; the target holds for the full {self.gate_images}-image set"
            )
        else:
            passed = top1_pct >= target
            verdict["passed"] = passed
            verdict["reason"] = f"infer top-1 {top1_pct:.4f}% {'>=' if passed else '<'} target {target:.4f}%"
        return verdict


def _load_failure(exc: Exception) -> str:
    """torch.load's reason in its first sentence, without its advice to load the file less safely
    (weights_only=False, allowlisting the file's classes): the unpickler's own error where torch gives it."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    reason = (text.split(marker, 1)[1] if marker in text else text).strip()
    first = reason.splitlines()[0].split(". ")[0].strip() if reason else ""
    if not first or "weights_only" in first or "safe_globals" in first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first.rstrip('.')}"


def discover() -> Dict[str, Case]:
    """All cases in this package, by name (each one named in contract.CASES)."""
    found: Dict[str, Case] = discover_plugins(sys.modules[__name__], "CASE", Case)
    for name in found:
        if name not in CASES:
            raise RuntimeError(f"case {name} is not in contract.CASES")
    return found
