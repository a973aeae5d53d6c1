"""Schemas of users."""

from __future__ import annotations

import uuid
from datetime import datetime

from models.base import AppModel


class UserRead(AppModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    is_active: bool
    created_at: datetime
