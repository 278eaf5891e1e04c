"""``cirrus-feed package``: build the Lambda zip (`cirrus_feed.packaging`). Registered on the
main group by `cirrus_feed.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cirrus_feed.cli.main import cli
from cirrus_feed.packaging import EXTRAS, PLATFORMS, build_lambda_zip


@cli.command()
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("dist/cirrus-feed-lambda.zip"),
    show_default=True,
)
@click.option(
    "--platform", type=click.Choice(sorted(PLATFORMS)), default="x86_64", show_default=True
)
@click.option("--extras", default="", help=f"Comma-separated, of: {', '.join(EXTRAS)}.")
@click.option("--with-boto3", is_flag=True, help="Bundle boto3/botocore instead of the runtime's.")
@click.option(
    "--bytecode/--no-bytecode",
    default=None,
    help="Ship compiled bytecode (default: when this Python is the target's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
def package(
    output: Path,
    platform: str,
    extras: str,
    with_boto3: bool,
    bytecode: bool | None,
    as_json: bool,
) -> None:
    """Build a Lambda deployment zip of cirrus-feed and the chosen extras (Python 3.11)."""
    built = build_lambda_zip(
        output,
        platform=platform,
        extras=extras.split(","),
        with_boto3=with_boto3,
        bytecode=bytecode,
    )
    if as_json:
        click.echo(json.dumps(built.describe()))
        return
    mb = 2**20
    click.echo(
        f"{built.path}: {built.unzipped_bytes / mb:.1f} MB unzipped, "
        f"{built.zipped_bytes / mb:.1f} MB zipped ({built.platform}, "
        f"extras: {', '.join(built.extras) or 'none'}, "
        f"bytecode: {'yes' if built.compiled else 'no'})"
    )
    for kind in sorted(built.removed_bytes):
        click.echo(
            f"  removed {kind}: {built.removed_files[kind]} files, "
            f"{built.removed_bytes[kind] / mb:.1f} MB"
        )
    if built.sdk_removed:
        click.echo(f"  AWS SDK left to the runtime: {', '.join(built.sdk_removed)}")
