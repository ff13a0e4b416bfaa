"""ctvl.synthesis: text → CT with a rectified-flow generator in the causal tokenizer's latent space.

A frozen all-MiniLM-L6-v2 (:mod:`~ctvl.synthesis.text`) turns the prompt into a cross-attention context; a
3D MONAI ``DiffusionModelUNet`` (:mod:`~ctvl.synthesis.model`) predicts the flow velocity of the tokenizer's
LFQ codes (:mod:`~ctvl.synthesis.flow`, MONAI ``RFlowScheduler``), with classifier-free guidance; the
tokenizer's streaming decoder turns the codes into a volume (:mod:`~ctvl.synthesis.sample`). Training runs
on the shared loop (:mod:`~ctvl.synthesis.task`); bundles carry the tokenizer they decode with
(:mod:`~ctvl.synthesis.bundle`). This package never imports :mod:`ctvl.report` or :mod:`ctvl.eval`: the report
labeler, where needed, is handed in by the caller.

Example::

    from ctvl.synthesis import load_generator, synthesize, write_result
    gen = load_generator()                       # the phantom bundle shipped with ctvl
    result = synthesize(gen, "moderate right pleural effusion, cardiomegaly", seed=0)
    write_result(result, "synth.nii.gz")         # + synth.json with prompt, seed, steps, guidance
"""

from ctvl.synthesis.bundle import DEFAULT_BUNDLE, LoadedGenerator, export_synthesis_bundle, load_generator
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig
from ctvl.synthesis.sample import SynthesisResult, generate, synthesize, write_result

__all__ = [
    "DEFAULT_BUNDLE",
    "LatentFlowGenerator",
    "LoadedGenerator",
    "SynthesisConfig",
    "SynthesisResult",
    "export_synthesis_bundle",
    "generate",
    "load_generator",
    "synthesize",
    "write_result",
]
