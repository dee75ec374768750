"""Server-rendered pages (Jinja2 + a little vanilla JavaScript, no CDN): login, worklist, study review, outbox."""
