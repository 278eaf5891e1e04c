"""The AWS deployment of cirrus-feed: a CloudFormation template rendered from a feeder config
(`template.render_template`), one schedule and function per scheduled feeder, one queue and
function per push (events) feeder. docs/deploy-aws.md tells how to use it."""
