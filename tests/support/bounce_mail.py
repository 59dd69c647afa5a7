"""Bounce and complaint mail about a given message, in the forms MTAs send: an RFC 3464 DSN as Postfix
writes it, an RFC 5965 abuse report. For the tests that need one about a message they just sent."""

from __future__ import annotations


def dsn(
    *, to: str, final_recipient: str, status: str, diagnostic: str, message_id: str, action: str = "failed"
) -> bytes:
    """A DSN mailed to ``to`` (the failed message's envelope sender) about ``final_recipient``."""
    return (
        "From: MAILER-DAEMON@relay.test (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n"
        "--B1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.test\r\n\r\n"
        f"Final-Recipient: rfc822; {final_recipient}\r\n"
        f"Original-Recipient: rfc822;{final_recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.com\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{to}>\r\n"
        "From: Hawkins Lab <news@example.org>\r\n"
        f"To: {final_recipient}\r\n"
        "Subject: Demogorgon\r\n"
        f"Message-ID: {message_id}\r\n\r\n"
        "--B1--\r\n"
    ).encode()


def abuse_report(
    *, to: str, original_recipient: str, message_id: str, returned_from: str = "news@example.org"
) -> bytes:
    """An ARF (RFC 5965) report that ``original_recipient`` marked the message as spam."""
    return (
        "From: feedback@fbl.example.com\r\n"
        f"To: {to}\r\n"
        "Subject: Abuse report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B2"\r\n'
        "\r\n"
        "--B2\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--B2\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: ExampleFBL/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Rcpt-To: {original_recipient}\r\n"
        "Reporting-MTA: dns; fbl.example.com\r\n\r\n"
        "--B2\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: {returned_from}\r\n"
        f"To: {original_recipient}\r\n"
        "Subject: Demogorgon\r\n"
        f"Message-ID: {message_id}\r\n\r\n"
        "Run for your life\r\n\r\n"
        "--B2--\r\n"
    ).encode()
