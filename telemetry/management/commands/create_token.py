from django.core.management.base import BaseCommand, CommandError

from telemetry.models import ApiToken, TokenScope


class Command(BaseCommand):
    help = "Create an API token. The token alone is printed on the last line, this once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes", required=True, help="Comma-separated: " + ",".join(TokenScope.values)
        )

    def handle(self, *args, name: str, scopes: str, **options):
        requested = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        unknown = sorted(set(requested) - set(TokenScope.values))
        if unknown or not requested:
            raise CommandError(f"unknown scopes {unknown}; choose from {TokenScope.values}")
        token, raw = ApiToken.issue(name=name, scopes=requested)
        self.stdout.write(f"Created token {token.name!r} with scopes {','.join(requested)}.")
        self.stdout.write("Store it now: it is not shown again.")
        self.stdout.write(raw)
