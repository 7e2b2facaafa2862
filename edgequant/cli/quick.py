"""`edgequant quantize MODEL ...` and `edgequant init MODEL`: the quick path, without writing YAML first."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgequant.cli.recipe_cmd import TrustCodeOpt
from edgequant.recipe.defaults import CALIBRATION_SAMPLES

Devices = Annotated[Optional[list[str]], typer.Option("--device", "-d", help="simulated device profile (repeatable)")]
Calib = Annotated[Optional[str], typer.Option(
    "--calib", help="calibration data: fashion-mnist[:train|test], a .npy/.npz file or a folder of images")]
Eval = Annotated[Optional[str], typer.Option("--eval", help="held-out evaluation data, in the same forms as --calib")]


def quantize(
    model: Annotated[Path, typer.Argument(help="the float model: .keras, .h5 or a SavedModel folder")],
    int8: Annotated[bool, typer.Option("--int8", help="full-integer int8 (needs --calib)")] = False,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="dynamic-range: int8 weights")] = False,
    float16: Annotated[bool, typer.Option("--float16", help="float16 weights")] = False,
    int16x8: Annotated[bool, typer.Option("--int16x8", help="int16 activations, int8 weights (needs --calib)")] = False,
    calib: Calib = None,
    evaluation: Eval = None,
    device: Devices = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="default: build/<model name>")] = None,
    samples: Annotated[int, typer.Option(min=1, help="calibration samples")] = CALIBRATION_SAMPLES,
    scale: Annotated[Optional[float], typer.Option(help="preprocess scale (default: 1/255 for uint8 data, "
                                                        "unless the model has a Rescaling layer)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing recipe.yaml in the output directory")] = False,
    # for models the defaults do not fit, and quick iterations (issue 23; kept together)
    input_type: Annotated[Optional[str], typer.Option(
        "--input-type", help="the int8 variant's input type: int8 (default), uint8 or float32")] = None,
    output_type: Annotated[Optional[str], typer.Option(
        "--output-type", help="the int8 variant's output type: int8 (default), uint8 or float32")] = None,
    input_shape: Annotated[Optional[str], typer.Option(
        "--input-shape", help="fix the input shape, without the batch, e.g. 224,224,3 (a model that takes any size)")
    ] = None,
    no_bench: Annotated[bool, typer.Option("--no-bench", help="skip the host benchmark")] = False,
    no_devices: Annotated[bool, typer.Option("--no-devices", help="skip the simulated devices")] = False,
    custom_objects: Annotated[Optional[list[str]], typer.Option(
        "--custom-objects", metavar="MODULE:NAME", help="a custom layer the model file names, e.g. "
        "mypackage.layers:Attention (repeatable; importing it runs its code: needs --trust-code)")] = None,
    trust_code: TrustCodeOpt = False,
) -> None:
    """Build MODEL's float32 reference and the chosen variants in one command, and write the recipe.yaml that repeats it.

    With no mode flag: --int8 when --calib is given, else --dynamic.
    Images are resized and converted to the model's input size and channels.
    uint8 data is scaled by 1/255, unless the model has a Rescaling layer.
    --no-bench and --no-devices skip the latency stages for a quick look; the report says so.
    """
    from edgequant.cli.build import run_build
    from edgequant.output.artifacts import write_atomic
    from edgequant.quick import (
        RECIPE_FILE,
        check_quick_arguments,
        choose_data,
        parse_input_shape,
        quick_recipe,
        read_model_facts,
        refuse_overwrite,
        with_input_shape,
    )

    modes = [m for m, on in (("float16", float16), ("dynamic", dynamic), ("int8", int8), ("int16x8", int16x8)) if on]
    modes = modes or (["int8"] if calib else ["dynamic"])
    check_quick_arguments(model, calib=calib, evaluation=evaluation, scale=scale)
    shape = parse_input_shape(input_shape) if input_shape is not None else None
    facts = read_model_facts(model, custom_objects=custom_objects or [], trust_code=trust_code)
    facts = with_input_shape(facts, shape) if shape is not None else facts
    calibration = choose_data(calib, facts, option="--calib", default_split="train", samples=samples, scale=scale) \
        if calib else None
    held_out = choose_data(evaluation, facts, option="--eval", default_split="test", scale=scale) \
        if evaluation else None
    recipe, text = quick_recipe(facts, modes, output_dir=output_dir, calibration=calibration, evaluation=held_out,
                                devices=device or [], input_type=input_type, output_type=output_type,
                                input_shape=shape, custom_objects=custom_objects or [])
    recipe_file = recipe.output_path() / RECIPE_FILE
    refuse_overwrite(recipe_file, force, same_text=text)
    write_atomic(recipe_file, text)  # before the build: a build that fails still leaves the recipe to fix and repeat
    typer.echo(f"recipe: {recipe_file} (repeat or edit it: edgequant build {recipe_file})")
    run_build(recipe, host_benchmark=not no_bench, devices=not no_devices, trust_code=trust_code)


def init(
    model: Annotated[Path, typer.Argument(help="the float model: .keras, .h5 or a SavedModel folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the recipe file to write")] = Path("recipe.yaml"),
    calib: Calib = None,
    evaluation: Eval = None,
    device: Devices = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter recipe for MODEL, from its input shape, dtype and preprocessing layers."""
    from edgequant.output.artifacts import write_atomic
    from edgequant.quick import check_quick_arguments, choose_data, read_model_facts, refuse_overwrite, starter_recipe

    refuse_overwrite(output, force)
    check_quick_arguments(model, calib=calib, evaluation=evaluation)
    facts = read_model_facts(model)
    calibration = choose_data(calib, facts, option="--calib", default_split="train",
                              samples=CALIBRATION_SAMPLES) if calib else None
    held_out = choose_data(evaluation, facts, option="--eval", default_split="test") if evaluation else None
    write_atomic(output, starter_recipe(facts, output, calibration=calibration, evaluation=held_out,
                                        devices=device or []))
    typer.echo(f"wrote {output}: check it with `edgequant recipe check {output}`")
