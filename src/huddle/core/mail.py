"""Outgoing mail: logged to the console by default, sent over SMTP when configured."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from huddle.config import Settings

log = logging.getLogger("huddle.mail")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class MailBackend(Protocol):
    async def send(self, mail: Mail) -> None: ...


class ConsoleMailBackend:
    """Writes each message to the log: enough to copy an invitation link on a dev box."""

    def __init__(self) -> None:
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)
        log.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.body)


class SMTPMailBackend:
    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host
        self._settings = settings

    async def send(self, mail: Mail) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.mail_from
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )
        log.info("mail sent to %s: %s", mail.to, mail.subject)


def create_mail_backend(settings: Settings) -> MailBackend:
    return SMTPMailBackend(settings) if settings.smtp_host else ConsoleMailBackend()
