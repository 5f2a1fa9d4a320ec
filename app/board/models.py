from django.db import models


class Message(models.Model):
    """A message on the board. Ids only grow and commit in id order (board.ordering), so clients resume by id."""

    MAX_LENGTH = 500

    text = models.CharField(max_length=MAX_LENGTH)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.id}: {self.text[:40]}"

    def as_json(self) -> dict:
        return {"id": self.id, "text": self.text, "created": self.created.isoformat()}


class Job(models.Model):
    """A background job: `total` steps run by a worker that holds a lease on it while it runs."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    STATES = [(QUEUED, "queued"), (RUNNING, "running"), (FINISHED, "finished")]
    MAX_STEPS = 50

    state = models.CharField(max_length=16, choices=STATES, default=QUEUED)
    total = models.PositiveSmallIntegerField()
    done = models.PositiveSmallIntegerField(default=0)
    # Token of the worker run that holds the lease; a run that lost it stops writing.
    owner = models.CharField(max_length=64, blank=True, default="")
    # A queued or running job whose lease has run out is sent to the workers again.
    lease_until = models.DateTimeField()
    # How many worker runs have claimed the job (more than one after a worker died).
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "lease_until"])]

    def __str__(self) -> str:
        return f"job #{self.id} {self.state} {self.done}/{self.total}"

    def as_json(self) -> dict:
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total}
