"""e2e stacks share moto's in-process backends: each gets its own deployment name (RDS2BQ_ENV),
so export ids (rds2bq-ENV-YYYYMMDDHHMMSS) of stacks started in the same minute never collide."""

from __future__ import annotations

import uuid


def isolated_env(**extra: str) -> dict[str, str]:
    return {"RDS2BQ_ENV": "e" + uuid.uuid4().hex[:8], **extra}
