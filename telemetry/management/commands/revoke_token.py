from django.core.management.base import BaseCommand, CommandError

from telemetry.models import ApiToken


class Command(BaseCommand):
    help = "Revoke API tokens by name."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)

    def handle(self, *args, name: str, **options):
        tokens = ApiToken.objects.active().filter(name=name)
        if not tokens:
            raise CommandError(f"no active token named {name!r}")
        for token in tokens:
            token.revoke()
        self.stdout.write(f"Revoked {len(tokens)} token(s) named {name!r}.")
