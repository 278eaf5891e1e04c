"""``cirrus-feed deploy template``: the CloudFormation template for the configured feeders."""

from __future__ import annotations

import click

from cirrus_feed.cli.main import Context, cli, pass_context


@cli.group()
def deploy() -> None:
    """Deploy on AWS (docs/deploy-aws.md)."""


@deploy.command("template")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write the template (JSON).",
)
@pass_context
def deploy_template(ctx: Context, output: str) -> None:
    """Render the template: one schedule + function per scheduled feeder of --config, one
    queue + function per events feeder, the feed-store table and the config parameter."""
    from cirrus_feed.deploy.template import dumps, render_template

    text = dumps(render_template(ctx.settings))
    with click.open_file(output, "w") as out:
        out.write(text)
