"""The embedded local backend: every port on one machine, no cloud account.

| port            | adapter                | storage                                  |
| --------------- | ---------------------- | ---------------------------------------- |
| StateStore      | `SqliteStateStore`     | SQLite table shaped like the DynamoDB one |
| PayloadQueue    | `SqlitePayloadQueue`   | SQLite, SQS semantics + dead letters     |
| PayloadStore    | `FilePayloadStore`     | v2 layout: `executions/` in SQLite, the rest files |
| WorkflowRunner  | `InlineWorkflowRunner` | SQLite execution log, tasks in-process   |
| Notifier        | `EventLogNotifier`     | SQLite event log                         |
| MetricLog       | `EventLogMetricLog`    | SQLite event log, ``metrics`` table      |
| DeadLetterQueue | `SqliteDeadLetterQueue` | the queue file's ``dead_letters`` table   |
| InvalidStore    | `FileInvalidStore`     | files under ``tmp/invalid/``             |

Every SQLite file is safe to share between threads and processes (`sqlite.SqliteDatabase`).
Import the adapters from their modules; this package imports nothing so that loading one
adapter never drags in the others.
"""
