"""The long-running parts of ``cirrus-feed serve``: scheduler, local workers, SNS endpoint."""
