"""The findings' tables keep every statistic the verdict engine returns."""

from dataclasses import fields

from deployments import judge
from deployments.models import AbstractFinding


def test_a_finding_has_one_column_for_each_field_of_the_judges_finding():
    # Deploy and flag findings are saved as Model(..., **vars(finding)).
    columns = {field.name for field in AbstractFinding._meta.local_fields}
    assert columns == {field.name for field in fields(judge.Finding)}
