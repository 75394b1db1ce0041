"""Parsing MovieLens files and the rating-to-interaction mapping."""

import numpy as np

from services.movielens_import import (
    Movie,
    Ratings,
    interaction_id,
    media_uuid,
    preferred_genres,
    read_movies,
    read_ratings,
    user_uuid,
)


def test_movies_parse_title_year_and_genres_with_crlf(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_bytes(
        b'movieId,title,genres\r\n1,Toy Story (1995),Adventure|Animation\r\n'
        b'2,"American President, The (1995)",Comedy|Drama|Romance\r\n3,Untitled,(no genres listed)\r\n'
    )
    assert read_movies(path) == [
        Movie(1, "Toy Story", 1995, ("Adventure", "Animation")),
        Movie(2, "American President, The", 1995, ("Comedy", "Drama", "Romance")),
        Movie(3, "Untitled", None, ()),
    ]


def test_ratings_parse_lf_and_crlf_alike(tmp_path):
    lf, crlf = tmp_path / "lf.csv", tmp_path / "crlf.csv"
    text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n"
    lf.write_text(text)
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    for path in (lf, crlf):
        ratings = read_ratings(path)
        assert ratings.user.tolist() == [1, 1]
        assert ratings.movie.tolist() == [31, 1029]
        assert ratings.rating.tolist() == [2.5, 3.0]
        assert ratings.timestamp.tolist() == [1260759144, 1260759179]


def test_ids_are_deterministic_and_distinct():
    assert user_uuid(1) == user_uuid(1) != user_uuid(2)
    assert media_uuid(1) != user_uuid(1)
    users = np.array([1, 1, 2, 162541])
    movies = np.array([1, 209171, 1, 1])
    ids = np.concatenate([interaction_id(users, movies, code) for code in (1, 2, 3)])
    assert len(set(ids.tolist())) == 12


def test_preferred_genres_are_the_most_liked_ones_ties_by_name():
    movies = [Movie(1, "a", None, ("Drama", "War")), Movie(2, "b", None, ("Drama", "Comedy")), Movie(3, "c", None, ("Horror",))]
    ratings = Ratings(
        user=np.array([7, 7, 7, 8]),
        movie=np.array([1, 2, 3, 3]),
        rating=np.array([5.0, 4.0, 1.0, 3.5]),
        timestamp=np.zeros(4, dtype=np.int64),
    )
    # user 7 liked 1 and 2 (Drama twice, Comedy and War once), disliked 3; user 8 liked nothing.
    assert preferred_genres(movies, ratings) == {7: ["Drama", "Comedy", "War"]}
