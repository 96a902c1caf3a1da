"""REST API of the annotation side (DRF, session auth, CSRF enforced by SessionAuthentication).

Each view parses input, calls one service or selector, and serialises; domain
errors become HTTP responses in ``feedback_site.errors.api_exception_handler``.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .roles import IsAnnotator, IsAnnotatorOrResearcher
from .assignment import assignment_ahead, assignment_next
from .judgements import assignment_skip, judgement_submit, judgements_visible, progress_get
from .listening import listening_original, listening_shown
from .serializers import (
    JudgementFilterSerializer,
    JudgementInputSerializer,
    JudgementSerializer,
    NextComparisonSerializer,
    NextQuerySerializer,
    OriginalSerializer,
    ProgressSerializer,
    SkipInputSerializer,
    SkipResultSerializer,
)


class NextComparisonView(APIView):
    """The comparison to judge now (the open assignment, or a newly assigned one) and progress counts.

    ``?ahead=1`` also assigns and returns the one after it, so the page fetches its audio in advance.
    """

    permission_classes = [IsAnnotator]

    @extend_schema(parameters=[NextQuerySerializer], responses=NextComparisonSerializer,
                   operation_id="comparisons_next")
    def get(self, request: Request) -> Response:
        query = NextQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        assignment = assignment_next(annotator=request.user)
        upcoming = None
        if assignment is not None and query.validated_data["ahead"]:
            upcoming = assignment_ahead(annotator=request.user, current=assignment)
        payload = {
            "comparison": listening_shown(assignment) if assignment is not None else None,
            "upcoming": listening_shown(upcoming) if upcoming is not None else None,
            "progress": progress_get(annotator=request.user),
        }
        return Response(NextComparisonSerializer(payload).data)


class ComparisonOriginalView(APIView):
    """The unedited source passage of a comparison you may hear: its audio URL and beat map.

    Rendered on first request.  404 for a comparison that does not exist or that
    you may not hear (annotators: one assigned to you).
    """

    permission_classes = [IsAnnotatorOrResearcher]

    @extend_schema(responses=OriginalSerializer, operation_id="comparisons_original")
    def get(self, request: Request, comparison_id: int) -> Response:
        original = listening_original(user=request.user, comparison_id=comparison_id)
        return Response(OriginalSerializer(original).data)


class ComparisonSkipView(APIView):
    """Give the assigned comparison back without judging it, with a reason."""

    permission_classes = [IsAnnotator]

    @extend_schema(request=SkipInputSerializer, responses=SkipResultSerializer, operation_id="comparisons_skip")
    def post(self, request: Request, comparison_id: int) -> Response:
        body = SkipInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        assignment = assignment_skip(annotator=request.user, comparison_id=comparison_id,
                                     reason_choice=body.validated_data["reason_choice"],
                                     reason=body.validated_data["reason"])
        return Response(SkipResultSerializer(assignment).data)


class JudgementListCreateView(generics.GenericAPIView):
    """GET: judgements you may read (researchers: all, with filters; annotators: their own).
    POST: submit a judgement (idempotent: the same answer again returns 200 and the stored judgement)."""

    throttle_scope = "judgements"  # rate in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAnnotator()]
        return [IsAnnotatorOrResearcher()]

    # The browsable API (a browser's Accept: text/html) asks for both: the list's queryset, and
    # the serializer of the POST form it offers to annotators.
    def get_serializer_class(self):
        return JudgementInputSerializer if self.request.method == "POST" else JudgementSerializer

    def get_queryset(self):
        """The judgements the user may read, narrowed by the query's filters (a bad filter is a 400)."""
        filters = JudgementFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        return judgements_visible(user=self.request.user, annotator_id=f.get("annotator"),
                                  comparison_id=f.get("comparison"), date=f.get("date"),
                                  since=f.get("since"), until=f.get("until"))

    @extend_schema(parameters=[JudgementFilterSerializer], responses=JudgementSerializer(many=True),
                   operation_id="judgements_list")
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(JudgementSerializer(page, many=True).data)

    @extend_schema(request=JudgementInputSerializer,
                   responses={201: JudgementSerializer, 200: OpenApiResponse(JudgementSerializer, "already stored")},
                   operation_id="judgements_submit")
    def post(self, request: Request) -> Response:
        body = JudgementInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        judgement, created = judgement_submit(
            annotator=request.user, comparison_id=d["comparison"], choice=d["choice"],
            confidence=d["confidence"], left_edit_id=d["left_edit"], seconds_a=d["seconds_a"],
            seconds_b=d["seconds_b"], switches=d["switches"], decision_seconds=d["decision_seconds"],
            comment=d["comment"],
        )
        return Response(JudgementSerializer(judgement).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ProgressView(APIView):
    """Your counts: judged today, judged in total, comparisons left in your queue."""

    permission_classes = [IsAnnotator]

    @extend_schema(responses=ProgressSerializer, operation_id="progress")
    def get(self, request: Request) -> Response:
        return Response(ProgressSerializer(progress_get(annotator=request.user)).data)
